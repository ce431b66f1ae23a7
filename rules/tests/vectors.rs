//! Every vector of `vectors/refresh-vectors.json` through `evaluate`: natively under
//! `cargo test`, and in wasm32 under `wasm-bindgen-test` (Node). Both must agree with
//! the file, so they agree with each other.

use freshet_rules::{EvaluationInput, evaluate};
use serde::Deserialize;
use serde_json::Value;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test;

const VECTORS: &str = include_str!("../vectors/refresh-vectors.json");

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    input: EvaluationInput,
    expected: Value,
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str::<File>(VECTORS)
        .expect("the vectors file parses")
        .vectors
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn every_vector_gives_exactly_the_expected_decision() {
    let vectors = vectors();
    assert!(
        vectors.len() >= 30,
        "the file holds {} vectors, fewer than 30",
        vectors.len()
    );
    let failures: Vec<String> = vectors
        .iter()
        .filter_map(|v| {
            let policy = v.input.policy().expect("vector interval is valid");
            let actual = serde_json::to_value(evaluate(&v.input.accounts, v.input.now, &policy))
                .expect("serializes");
            (actual != v.expected).then(|| {
                format!(
                    "{}\n  expected {}\n  actual   {}",
                    v.name, v.expected, actual
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} vectors disagree:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn vector_names_are_unique() {
    let vectors = vectors();
    let mut names: Vec<&str> = vectors.iter().map(|v| v.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), vectors.len());
}
