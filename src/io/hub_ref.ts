// A Hugging Face model reference as a person pastes it: an id ("org/name", or a legacy single name) or the
// model page's full URL, with the revision the URL names (https://huggingface.co/org/name/tree/REV,
// …/resolve/REV/file, …/blob/REV/file). Pure parsing, no imports, so the page (through worker/identity.ts),
// the worker and the CLI read a pasted URL alike. Downloading is hub.ts's.

export interface HubRef {
  id: string;
  /** The revision a /tree/, /resolve/ or /blob/ URL names; absent for a plain id or a bare model URL. */
  revision?: string;
}

/** "org/name" (or a legacy single name), the characters the Hub allows, no "..". */
function isPlainId(id: string): boolean {
  return /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/.test(id) && !id.includes('..');
}

const HUB_HOSTS = new Set(['huggingface.co', 'www.huggingface.co', 'hf.co']);

/** The id and revision in `text` (trimmed), or null when it is neither a Hub id nor a Hub model URL. */
export function parseHubRef(text: string): HubRef | null {
  const s = text.trim();
  if (isPlainId(s)) return { id: s };
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return null;
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || !HUB_HOSTS.has(url.hostname.toLowerCase())) return null;
  const parts = url.pathname.split('/').filter((p) => p !== '').map((p) => decodeURIComponent(p));
  // Datasets and Spaces live under their own prefixes; only models load here.
  if (parts.length === 0 || parts[0] === 'datasets' || parts[0] === 'spaces') return null;
  const kinds = ['tree', 'resolve', 'blob', 'commit'];
  const at = parts.findIndex((p, i) => i > 0 && kinds.includes(p));
  const idParts = at === -1 ? parts : parts.slice(0, at);
  if (idParts.length > 2) return null;
  const id = idParts.join('/');
  if (!isPlainId(id)) return null;
  const revision = at === -1 ? undefined : parts[at + 1];
  return revision ? { id, revision } : { id };
}
