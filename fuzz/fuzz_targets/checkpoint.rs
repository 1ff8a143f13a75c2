//! Fuzzes checkpoint loading: any bytes must give `Ok` or an error, never a
//! panic, into a model with a kernel, a bias and optimizer state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polyhead_layers::{Adam, Dense, load_checkpoint_bytes};
use polyhead_tensor::Rng;

fuzz_target!(|data: &[u8]| {
    let mut model = Dense::<f32>::new(3, 2, &mut Rng::new(0)).expect("model");
    let mut opt = Adam::new(1e-3).build();
    let _ = load_checkpoint_bytes("fuzz", data, &mut model, Some(&mut opt));
    let _ = load_checkpoint_bytes("fuzz", data, &mut model, None);
});
