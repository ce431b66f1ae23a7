//! Makes the generated OpenAPI document as strict as the server, in one pass over it:
//! a client generated from it, or a fuzzer reading it, must not be able to send what the
//! schema allows and the server refuses, nor get an answer the schema does not list.
//!
//! The handlers' annotations say what is particular to each operation (its success, its
//! 404s and 422s); what every operation shares is added here, once:
//! - `security` (the `x-api-key` scheme) on every operation, and its `401`;
//! - `400 INVALID_PATH_PARAMETER` wherever the path has an id, the body's `400`, `413` and
//!   `415` wherever there is a body, and `500` everywhere;
//! - the constraints of each request field and parameter the server checks, by name (the
//!   table in [`constrain`]), applied to request bodies and parameters only: answers keep
//!   the looser types they are read with;
//! - an optional body is an optional object, not a `null`.

use serde_json::{Map, Value, json};

use crate::model::forms::{HTTPS_URL, LOOPBACK_HTTP_URL, MAX_URL_LENGTH, TIMESTAMP};

/// A transactions cursor as the API hands them out: `<ms>:<uuid>`, hex-encoded.
const TRANSACTIONS_CURSOR: &str = "^(2d)?(3[0-9]){1,15}3a((3[0-9]|6[1-6]){8})2d((3[0-9]|6[1-6]){4})2d((3[0-9]|6[1-6]){4})2d((3[0-9]|6[1-6]){4})2d((3[0-9]|6[1-6]){12})$";
/// An attempt-log cursor: `<started ms>.<attempt>.<eventId>`.
const ATTEMPTS_CURSOR: &str = r"^[0-9]{1,15}\.[0-9]{1,9}\.[A-Za-z0-9_-]{1,64}$";

/// What this server takes beyond the production rules: the document describes the server
/// that serves it.
#[derive(Clone, Copy, Debug)]
pub struct Leniency {
    /// Partner redirects to http on loopback (a sandbox server).
    pub loopback_redirects: bool,
}

/// Every tightening, in order.
pub fn make_exact(doc: &mut Value, leniency: Leniency) {
    event_type_schema(doc);
    let request_schemas = request_schema_names(doc);
    for name in &request_schemas {
        if let Some(Value::Object(properties)) =
            doc.pointer_mut(&format!("/components/schemas/{name}/properties"))
        {
            for (field, schema) in properties.iter_mut() {
                constrain(field, "", leniency, schema);
            }
        }
    }
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Value::Object(item) = item else { continue };
        for (method, operation) in item.iter_mut() {
            if matches!(method.as_str(), "get" | "put" | "post" | "patch" | "delete") {
                operation_answers(path, leniency, operation);
            }
        }
    }
}

/// The event types a subscription may name, as one enum schema (`EventType`).
fn event_type_schema(doc: &mut Value) {
    let names: Vec<&str> = freshet_rules::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    if let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") {
        schemas.insert(
            "EventType".to_owned(),
            json!({"type": "string", "enum": names, "description": "An event type a subscription may ask for."}),
        );
    }
}

/// The component schemas that request bodies name, and those they name in turn.
fn request_schema_names(doc: &Value) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if let Some(Value::Object(paths)) = doc.get("paths") {
        for item in paths.values() {
            for operation in item.as_object().into_iter().flat_map(Map::values) {
                if let Some(body) =
                    operation.pointer("/requestBody/content/application~1json/schema")
                {
                    refs(body, &mut names);
                }
            }
        }
    }
    let mut i = 0;
    while i < names.len() {
        if let Some(schema) = doc.pointer(&format!("/components/schemas/{}", names[i])) {
            let mut more = Vec::new();
            refs(schema, &mut more);
            for name in more {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        i += 1;
    }
    names
}

fn refs(schema: &Value, into: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                && !into.iter().any(|n| n == name)
            {
                into.push(name.to_owned());
            }
            map.values().for_each(|v| refs(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, into)),
        _ => {}
    }
}

/// The constraints the server checks on a request field or parameter named `field` (of the
/// operation at `path`, for the names that differ by operation).
fn constrain(field: &str, path: &str, leniency: Leniency, schema: &mut Value) {
    let Value::Object(s) = schema else { return };
    let mut set = |pairs: Value| {
        if let Value::Object(pairs) = pairs {
            s.extend(pairs);
        }
    };
    match field {
        "dateFrom" | "dateTo" | "since" => {
            set(json!({"format": "date-time", "pattern": TIMESTAMP}));
        }
        "cursor" if path.ends_with("/deliveries") => {
            set(json!({"pattern": ATTEMPTS_CURSOR}));
        }
        "cursor" => set(json!({"pattern": TRANSACTIONS_CURSOR})),
        "limit" => set(json!({"minimum": 1, "maximum": 500})),
        "eventId" => set(json!({"minLength": 1, "maxLength": 64})),
        "Idempotency-Key" => set(json!({"minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"})),
        "targetUrl" => {
            set(json!({"format": "uri", "maxLength": MAX_URL_LENGTH, "pattern": HTTPS_URL}));
        }
        "partnerRedirectUrl" if leniency.loopback_redirects => set(json!({
            "format": "uri",
            "maxLength": MAX_URL_LENGTH,
            "pattern": format!("{HTTPS_URL}|{LOOPBACK_HTTP_URL}"),
        })),
        "partnerRedirectUrl" => {
            set(json!({"format": "uri", "maxLength": MAX_URL_LENGTH, "pattern": HTTPS_URL}));
        }
        "persona" => {
            set(json!({"enum": nullable_enum(crate::bank::sandbox::PERSONAS.iter().copied())}))
        }
        "kind" => set(
            json!({"enum": nullable_enum(crate::bank::sandbox::FaultKind::ALL.iter().map(|k| k.as_str()))}),
        ),
        "offsetSeconds" => set(json!({
            "minimum": -crate::services::sandbox::MAX_CLOCK_OFFSET_SECONDS,
            "maximum": crate::services::sandbox::MAX_CLOCK_OFFSET_SECONDS,
        })),
        "eventTypes" => set(json!({
            "items": {"$ref": "#/components/schemas/EventType"},
            "minItems": 1,
        })),
        "externalReference" => set(json!({"minLength": 1, "maxLength": 255})),
        "correlationId" => set(json!({"minLength": 1, "maxLength": 256})),
        "accounts" => set(json!({"minItems": 1, "maxItems": 50})),
        "latencyMs" => {
            set(json!({"minimum": 0, "maximum": crate::services::sandbox::MAX_FAULT_LATENCY_MS}))
        }
        "jitterPercent" => set(json!({"minimum": 0, "maximum": 100})),
        "retryAfterSeconds" => set(
            json!({"minimum": 0, "maximum": crate::services::sandbox::MAX_FAULT_RETRY_AFTER_SECONDS}),
        ),
        _ => {}
    }
}

/// An enum of `names` that also admits `null` (the fields are optional and nullable).
fn nullable_enum<'a>(names: impl Iterator<Item = &'a str>) -> Value {
    let mut values: Vec<Value> = names.map(|n| Value::String(n.to_owned())).collect();
    values.push(Value::Null);
    Value::Array(values)
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// Adds `code` to the answer `status` of `responses` (creating it with `description`).
fn answer(responses: &mut Map<String, Value>, status: &str, code: &str, description: &str) {
    match responses.get_mut(status) {
        Some(existing) => {
            let text = existing["description"].as_str().unwrap_or_default();
            if !text.contains(code) {
                existing["description"] = Value::String(format!("{text}; {code}: {description}"));
            }
        }
        None => {
            responses.insert(
                status.to_owned(),
                problem(&format!("{code}: {description}")),
            );
        }
    }
}

fn operation_answers(path: &str, leniency: Leniency, operation: &mut Value) {
    let Value::Object(op) = operation else { return };
    op.insert("security".to_owned(), json!([{"api_key": []}]));
    // Parameters: their constraints.
    let has_path_id = path.contains('{');
    if let Some(Value::Array(params)) = op.get_mut("parameters") {
        for p in params.iter_mut() {
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            if let Some(schema) = p.get_mut("schema") {
                constrain(&name, path, leniency, schema);
            }
        }
    }
    // An optional body is an optional object; `null` is not a body.
    let mut has_body = false;
    if let Some(body) = op.get_mut("requestBody") {
        has_body = true;
        let object = body
            .pointer("/content/application~1json/schema/oneOf")
            .and_then(Value::as_array)
            .filter(|choices| choices.len() == 2 && choices.iter().any(|c| c["type"] == "null"))
            .and_then(|choices| choices.iter().find(|c| c["type"] != "null"))
            .cloned();
        if let Some(object) = object {
            body["content"]["application/json"]["schema"] = object;
            body["required"] = Value::Bool(false);
        }
        if body.get("required").is_none() {
            body["required"] = Value::Bool(true);
        }
    }
    let Some(Value::Object(responses)) = op.get_mut("responses") else {
        return;
    };
    answer(
        responses,
        "401",
        "UNAUTHORIZED",
        "a valid x-api-key header is required",
    );
    if has_path_id {
        answer(
            responses,
            "400",
            "INVALID_PATH_PARAMETER",
            "an id in the path is not a lowercase, hyphenated UUID",
        );
    }
    if has_body {
        answer(responses, "400", "MALFORMED_JSON", "the body is not JSON");
        answer(
            responses,
            "400",
            "INVALID_BODY",
            "the body does not fit the schema",
        );
        answer(
            responses,
            "413",
            "PAYLOAD_TOO_LARGE",
            "the body is over 64 KiB",
        );
        answer(
            responses,
            "415",
            "UNSUPPORTED_MEDIA_TYPE",
            "the body must be application/json",
        );
    }
    answer(
        responses,
        "500",
        "INTERNAL",
        "a failure of the server's own; the body's requestId names it in the log",
    );
}
