#[derive(MultiOutput)]
pub struct DigitLocator {
    #[trunk]
    body: Sequential,
    #[head(loss = CrossEntropy::from_logits(), weight = 1.0)]
    class: Dense,
    #[head(loss = Mse::new(), weight = 0.5)]
    bbox: Dense,
    #[head]
    embedding: Dense,
}
