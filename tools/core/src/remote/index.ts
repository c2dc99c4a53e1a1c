/** Shared artifact stores (issue 9): opened from a URL given by --store or DISTILL_STORE. */
import type { RemoteStore } from '../cache/store.js';

export function openRemoteStore(url: string): RemoteStore {
  throw new Error(`remote artifact store ${url}: not implemented`);
}
