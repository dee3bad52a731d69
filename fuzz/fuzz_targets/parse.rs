//! YAML decoding: any bytes as a config file. The parser must not panic, must say why it
//! could read nothing (the file then keeps its last good resources), and every resource and
//! failure it reports must point into this file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vsteer_model::parse::parse_bytes;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_bytes("fuzz.yaml", data.to_vec());
    assert!(
        !parsed.unreadable || !parsed.errors.is_empty(),
        "unreadable without a reason"
    );
    if parsed.unreadable {
        assert!(
            parsed.resources.is_empty(),
            "an unreadable file yielded resources"
        );
    }
    for resource in &parsed.resources {
        assert_eq!(&*resource.origin.file, "fuzz.yaml");
    }
    for error in parsed.errors.iter().chain(&parsed.warnings) {
        assert_eq!(&*error.file, "fuzz.yaml");
        // Rendering a message must not panic either.
        let _ = error.to_string();
    }
});
