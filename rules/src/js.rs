//! The rules for JavaScript (feature `js`): a partner's own web app can run the very
//! decision the server makes. Objects in, objects out, with the API's field names.
//!
//! ```js
//! import init, { evaluate } from "freshet-rules";
//! const decision = evaluate({ now: new Date().toISOString(), accounts });
//! ```

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::model::EvaluationInput;

fn read_input(input: JsValue) -> Result<EvaluationInput, JsError> {
    serde_wasm_bindgen::from_value(input).map_err(|e| JsError::new(&format!("invalid input: {e}")))
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    // json_compatible: plain objects (not Maps), absent fields stay absent.
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()))
}

/// `evaluate({accounts, now, intervalSeconds?})` → `{status, nextRefreshAvailableAt?, accounts}`.
#[wasm_bindgen]
pub fn evaluate(input: JsValue) -> Result<JsValue, JsError> {
    let input = read_input(input)?;
    let policy = input.policy()?;
    to_js(&crate::evaluate(&input.accounts, input.now, &policy))
}

/// `preview({accounts, now, intervalSeconds?})` → `{decision, triggered, total, secondsUntilNextRefresh?, summary}`.
#[wasm_bindgen]
pub fn preview(input: JsValue) -> Result<JsValue, JsError> {
    let input = read_input(input)?;
    let policy = input.policy()?;
    to_js(&crate::preview(&input.accounts, input.now, &policy))
}

/// For benchmarks: reads the input once, then evaluates it `iterations` times inside wasm
/// and returns how many account decisions were made, so that the time measured around
/// this call is the rules' own and not the crossing between JavaScript and wasm.
#[wasm_bindgen(js_name = evaluateRepeated)]
pub fn evaluate_repeated(input: JsValue, iterations: u32) -> Result<f64, JsError> {
    let input = read_input(input)?;
    let policy = input.policy()?;
    let mut decided = 0_f64;
    for _ in 0..iterations {
        let decision = crate::evaluate(std::hint::black_box(&input.accounts), input.now, &policy);
        decided += decision.accounts.len() as f64;
    }
    Ok(decided)
}
