// The entry point of the syncstore npm package: the wasm-bindgen module
// (./syncstore.js) plus lazy initialization and the real SyncStoreError class.
// scripts/package.sh writes the path of the JS helpers module (its directory
// name carries a hash) in place of the placeholder below.
import init, { SyncStore as GeneratedSyncStore } from "./syncstore.js";

export * from "./syncstore.js";
export { SyncStoreError } from "@SYNCSTORE_GLUE_JS@";

let ready;

/**
 * Loads and instantiates the WebAssembly module, once. `SyncStore.open` calls
 * it, so calling it first is optional: to start the download early, or to
 * load the module from elsewhere (a URL, a `Response`, bytes or a compiled
 * `WebAssembly.Module`). Only the first call's `input` counts.
 */
export function initSyncStore(input) {
  if (ready === undefined) {
    ready = init(input === undefined ? undefined : { module_or_path: input }).then(
      () => undefined,
      (e) => {
        ready = undefined; // a failed load (e.g. offline) may be retried
        throw e;
      },
    );
  }
  return ready;
}

export default initSyncStore;

const generatedOpen = GeneratedSyncStore.open;
// SyncStore.open initializes the module first. `SyncStore` is exported below
// as a binding of this module, not re-exported from ./syncstore.js: with
// "sideEffects": false a bundler would import it from there directly and
// drop this statement (Vite does).
GeneratedSyncStore.open = async function open(options) {
  await initSyncStore();
  return generatedOpen.call(this, options);
};

export const SyncStore = GeneratedSyncStore;
