//! The parameters cell: any source gives fields (some read-only), never a panic. Each
//! editable default, written as the injected cell writes it, reads back as the same value;
//! validating the form as shown and writing the injected cell never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbforge::worksheet::params::{
    ParamValue, Values, injected_source, parse_parameters_source, validate,
};
use std::collections::HashMap;

fn comparable(v: &ParamValue) -> bool {
    match v {
        ParamValue::Float(f) => f.is_finite(),
        ParamValue::List(items) => items.iter().all(comparable),
        _ => true,
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(src) = std::str::from_utf8(bytes) else {
        return;
    };
    let params = parse_parameters_source(src);
    let mut form = HashMap::new();
    let mut values = Values::default();
    for p in params.iter().filter(|p| p.supported.is_ok()) {
        form.insert(p.name.clone(), p.default.to_form_string());
        values.insert(p.name.clone(), p.default.clone());
        if comparable(&p.default) {
            let written = format!("{} = {}\n", p.name, p.default.to_python());
            let back = parse_parameters_source(&written);
            assert_eq!(back.len(), 1, "{written}");
            assert_eq!(back[0].default, p.default, "{written}");
        }
    }
    let _ = validate(&params, &form);
    let _ = injected_source(&values);
});
