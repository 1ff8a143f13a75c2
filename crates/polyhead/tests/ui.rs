//! The derive's error messages, checked against `tests/ui/*.stderr`: each
//! misuse gives one clear message at the user's own token, and several
//! mistakes are reported together. Regenerate the expected output after an
//! intended change with `TRYBUILD=overwrite cargo test -p polyhead --test ui`.

#[test]
fn derive_errors_point_at_the_mistake() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
