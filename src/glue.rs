//! Bindings to `js/glue.js`, the module's small JavaScript side.

use js_sys::{Array, Function, JsString, Promise};
use wasm_bindgen::prelude::*;
use web_sys::{IdbDatabase, IdbObjectStore, IdbRequest, IdbTransaction};

#[wasm_bindgen(module = "/src/js/glue.js")]
extern "C" {
    #[wasm_bindgen(js_name = makeError)]
    pub fn make_error(code: &str, message: &str, retryable: bool) -> JsValue;
    #[wasm_bindgen(js_name = storageError)]
    pub fn storage_error(e: &JsValue, what: &str) -> JsValue;
    #[wasm_bindgen(js_name = errorClass)]
    pub fn error_class() -> JsValue;
    #[wasm_bindgen(js_name = encodeJson, catch)]
    pub fn encode_json(v: &JsValue, path: &str, code: &str) -> Result<String, JsValue>;
    #[wasm_bindgen(js_name = docsText)]
    pub fn docs_text(records: &Array, picks: Option<Vec<u32>>) -> JsString;
    #[wasm_bindgen(js_name = syncDocsText)]
    pub fn sync_docs_text(
        db: &IdbDatabase,
        server: &str,
        coll: &str,
        records: &Array,
        picks: Option<Vec<u32>>,
    ) -> Promise;
    #[wasm_bindgen(js_name = parseJson)]
    pub fn parse_json(text: &JsValue) -> JsValue;
    pub fn revive(value: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = parseDoc)]
    pub fn parse_doc(record: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = parseDocs)]
    pub fn parse_docs(records: &Array) -> Array;
    #[wasm_bindgen(js_name = unionRecords)]
    pub fn union_records(lists: &Array) -> Array;
    pub fn request(req: &IdbRequest) -> Promise;
    pub fn requests(reqs: &Array) -> Promise;
    pub fn done(tx: &IdbTransaction) -> Promise;
    #[wasm_bindgen(js_name = loadStates)]
    pub fn load_states(tx: &IdbTransaction, server: &str, keys: &JsValue) -> Promise;
    #[wasm_bindgen(catch, js_name = writePlan)]
    pub fn write_plan(tx: &IdbTransaction, plan: &JsValue) -> Result<Array, JsValue>;
    #[wasm_bindgen(js_name = getAllOrdered)]
    pub fn get_all_ordered(
        source: &JsValue,
        range: &JsValue,
        direction: &str,
        offset: u32,
        limit: i32,
    ) -> Option<Promise>;
    #[wasm_bindgen(js_name = countOutbox)]
    pub fn count_outbox(store: &IdbObjectStore) -> Promise;
    pub fn persist();
    #[wasm_bindgen(js_name = firstMid)]
    pub fn first_mid(adds: &Array) -> f64;
    #[wasm_bindgen(js_name = failedRequest)]
    pub fn failed_request(reqs: &Array) -> i32;
    #[wasm_bindgen(js_name = cursorValues)]
    pub fn cursor_values(
        source: &JsValue,
        range: &JsValue,
        direction: &str,
        offset: u32,
        limit: i32,
    ) -> Promise;
    #[wasm_bindgen(js_name = openDb)]
    pub fn open_db(name: &str, layout: &JsValue, rekey: &Function, on_lost: &Function) -> Promise;
    #[wasm_bindgen(js_name = nextTask)]
    pub fn next_task() -> Promise;
    #[wasm_bindgen(js_name = callListener)]
    pub fn call_listener(f: &Function, arg: &JsValue);
    pub fn unsubscriber(release: &Function, id: u32) -> Function;
    pub fn http(
        method: &str,
        url: &str,
        token: &str,
        client_id: &str,
        body: Option<String>,
    ) -> Promise;
    #[wasm_bindgen(js_name = randomSeed)]
    pub fn random_seed() -> Array;
    #[wasm_bindgen(js_name = takeResolvers)]
    pub fn take_resolvers(options: &JsValue) -> Array;
    /// `sync.getToken()`: a promise of a non-empty string, or a rejection
    /// with the reason (see `callGetToken` in glue.js).
    #[wasm_bindgen(js_name = callGetToken)]
    pub fn call_get_token(f: &Function) -> Promise;
    /// An `update` function's answer: `[whole, json]` (see `callModifier`
    /// in glue.js), or the typed error it caused.
    #[wasm_bindgen(catch, js_name = callModifier)]
    pub fn call_modifier(f: &Function, doc: &JsValue) -> Result<Array, JsValue>;
    /// `db.live(...)`'s Observable (see `LiveQuery` in glue.js).
    #[wasm_bindgen(js_name = liveQuery)]
    pub fn live_query(handle: &JsValue, what: &JsValue, query: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = callResolver)]
    pub fn call_resolver(f: &Function, ctx: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = applyOps)]
    pub fn apply_ops(tx: &IdbTransaction, ops: &JsValue) -> Array;
    /// Resolves `true` once `ops` are issued, `false` if the check failed.
    #[wasm_bindgen(js_name = applyIfAbsent)]
    pub fn apply_if_absent(tx: &IdbTransaction, check: &JsValue, ops: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = watchOnline)]
    pub fn watch_online(cb: &Function) -> Function;
    #[wasm_bindgen(js_name = isOnline)]
    pub fn is_online() -> bool;

    pub fn every(ms: u32, cb: &Function) -> Function;
    #[wasm_bindgen(js_name = isVisible)]
    pub fn is_visible() -> bool;

    /// The sync leader lock (see `LeaderLock` in glue.js).
    pub type LeaderLock;
    #[wasm_bindgen(constructor)]
    pub fn new(name: &str, on_granted: &Function, on_lost: &Function) -> LeaderLock;
    #[wasm_bindgen(method, getter)]
    pub fn held(this: &LeaderLock) -> bool;
    #[wasm_bindgen(method)]
    pub fn steal(this: &LeaderLock);
    #[wasm_bindgen(method)]
    pub fn close(this: &LeaderLock);

    /// The sync loop's alarm clock (see `Waker` in glue.js).
    pub type Waker;
    #[wasm_bindgen(constructor)]
    pub fn new() -> Waker;
    #[wasm_bindgen(method)]
    pub fn wake(this: &Waker);
    #[wasm_bindgen(method)]
    pub fn wait(this: &Waker, ms: f64) -> Promise;
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console)]
    pub fn warn(msg: &str, e: &JsValue);
}
