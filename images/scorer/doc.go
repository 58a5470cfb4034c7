// Package scorer is the scoring server inside every mlfleet image: it loads
// the image's manifest and model, serves the model over HTTP and keeps drift
// profiles of what it scores.
//
// # Model binding (runtime "onnx")
//
// At startup the manifest's schema inputs are bound to the model's graph
// inputs, and the sample data is scored once; any problem stops the server
// with an error naming the file, field or operator. The rule:
//
//   - (a) If every schema input names a model input, each field becomes its
//     own tensor of shape [N, field shape...] (reshaped to the model's
//     declared shape when the element count per row matches, e.g. a scalar
//     field into [N, 1]). Every required model input must be named.
//   - (b) Otherwise, if the model has exactly one required tensor input of
//     shape [N, K] and the schema's fields are numeric (or bool) and hold K
//     elements in total, the fields are concatenated in schema order into
//     that tensor: the scikit-learn case of named features -> X.
//   - Anything else is refused at startup.
//
// Values are converted to the model input's element type. A null (nullable
// field) becomes NaN for float inputs, 0 for integers and "" for strings.
// Schema fields with dynamic shapes (-1) cannot be bound to an ONNX model.
//
// # Results
//
// POST /score and POST /invocations return one JSON value per row: for the
// onnx runtime an object keyed by model output name; a per-row scalar output
// is a value, a per-row vector an array (nested for higher ranks), a
// sequence of maps (ZipMap) an object keyed by class. When the manifest has
// scoring.outputLabels and a float output has one value per label, the row
// also has "<output>_by_label": {label: value}. For the exec runtime each
// row's value is what the command returned for it.
//
//	POST /score        {"input_df": [{"f": 1.0, ...}]}  ->  {"result": [{...}]}
//	POST /invocations  {"dataframe_split"|"dataframe_records"|"instances"|"inputs": ...}
//	                   ->  {"predictions": [{...}]}
//	POST /v2/models/{name}/infer  Open Inference Protocol v2 tensors in and out
//	GET  /swagger.json, /healthz, /ping, /v2, /v2/health/{live,ready},
//	     /v2/models/{name}, /v2/models/{name}/ready, /v1/profile, /metrics
//
// A v2 request gives one tensor per schema input ([N, field shape...]) or,
// for a model bound by rule (b), one tensor named after the model input
// ([N, K]), split into the schema's fields in order. Sequence outputs and
// exec results come back as BYTES tensors of per-row JSON text (exec
// results that are all numbers as FP64).
//
// # Errors and limits
//
// Rows are validated against the schema (missing and extra fields, types,
// shapes, range, categories); a bad row gets 400 with
// {"error": {"message", "row", "field"}} ({"error": "..."} for v2). Bodies
// over Config.MaxBodyBytes get 413, more than Config.MaxRows rows 400, a
// Content-Type other than application/json 415. At most Config.Workers
// requests are scored at once and Config.QueueSize wait; beyond that 429
// with Retry-After. A request holds its place before its body is read, so
// memory stays bounded by (Workers+QueueSize) * MaxBodyBytes.
//
// # Runtime "exec"
//
// scoring.command runs as a child process started by Serve. The scorer
// writes {"id":n,"rows":[...]} lines to its stdin and reads
// {"id":n,"result":[...]} or {"id":n,"error":"..."} lines from its stdout
// (one result per row). Without scoring.batchInput every row is sent as
// its own call. A dead child is restarted with exponential backoff
// (requests meanwhile get 503); a call not answered within
// scoring.timeoutMs gets 504. The child runs in the manifest's directory
// with MLFLEET_MODEL_DIR in its environment.
//
// # Profiles
//
// Every scored row feeds a profile (package shared/profile) per time window
// (Config.ProfileWindow): numeric inputs are binned on the baseline's edges
// or on 10 quantile bins of the sample data; strings, bools and integer
// fields with categories are counted per category. Rejected rows count a
// type error or an out-of-range value on the field at fault. Outputs are
// profiled per output (per element for vectors, "<name>[label]"). GET
// /v1/profile returns {"current": window, "last": last closed window}.
package scorer
