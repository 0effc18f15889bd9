// A numeric setting's box as every panel draws it: the label, the text exactly as typed, and beside it the
// reason and the allowed range when the text cannot be used (or a warning when it can), tied to the box by
// aria-describedby; and useSettingsCheck, the run settings judged by settings_check.ts for the panels that
// show them and the Start button that waits for them. Not the judging itself: that is settings_check.ts.

import { useId, useMemo } from 'react';
import { checkSettings, DEFAULT_CONTEXT, fieldTexts, settingValues, type FieldCheck, type SettingField, type SettingsCheck } from './settings_check';
import { useStudio } from './store';

/** The run settings' texts and their check, recomputed only when the settings, the texts, the model or the data change. */
export function useSettingsCheck(): { texts: Record<SettingField, string>; check: SettingsCheck } {
  const settings = useStudio((s) => s.settings);
  const drafts = useStudio((s) => s.drafts);
  const contextLength = useStudio((s) => s.model.facts?.contextLength ?? DEFAULT_CONTEXT);
  const data = useStudio((s) => s.data.result);
  return useMemo(() => {
    const texts = fieldTexts(settingValues(settings), drafts);
    const rows = data && data.seqLen === settings.seqLen ? { trainRows: data.trainRows, validationRows: data.validationRows } : null;
    return { texts, check: checkSettings(texts, { contextLength, data: rows }) };
  }, [settings, drafts, contextLength, data]);
}

interface NumberFieldProps {
  label: string;
  text: string;
  check: FieldCheck;
  onText: (text: string) => void;
  /** The spin box's bounds and step (the check holds the real rule); `text` makes it a text box (for 3e-4). */
  min?: number;
  max?: number;
  step?: number | 'any';
  textBox?: boolean;
  title?: string;
  disabled?: boolean;
  testId?: string;
}

export function NumberField({ label, text, check, onText, min, max, step = 'any', textBox, title, disabled, testId }: NumberFieldProps) {
  const id = useId();
  const message = check.error ?? check.warning;
  return (
    <div className="field narrow" title={title}>
      <label htmlFor={`${id}-input`}>{label}</label>
      <input
        id={`${id}-input`}
        type={textBox ? 'text' : 'number'}
        inputMode="decimal"
        value={text}
        min={textBox ? undefined : min}
        max={textBox ? undefined : max}
        step={textBox ? undefined : step}
        disabled={disabled}
        aria-invalid={check.error ? true : undefined}
        aria-describedby={message ? `${id}-message` : undefined}
        data-testid={testId}
        onChange={(e) => onText(e.target.value)}
      />
      {message && (
        <span id={`${id}-message`} className={check.error ? 'field-error' : 'field-warning'} data-kind={check.error ? 'error' : 'warning'}>
          {message}
        </span>
      )}
    </div>
  );
}
