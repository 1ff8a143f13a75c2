//! Per-thread storage chosen by type: the tensor pool and the tape's spare
//! lists keep one thread-local cell for `f32` and one for `f64`, and generic
//! code reaches the right one through [`with_local`].

use std::any::Any;
use std::cell::RefCell;
use std::thread::LocalKey;

/// Runs `f` on the contents of whichever of the two thread-local cells `a`
/// and `b` holds an `X` (a type check, so nothing is boxed). `None` when
/// neither does, while the thread is being torn down, or when that cell is
/// already borrowed further up the stack.
///
/// ```
/// use std::cell::RefCell;
/// thread_local! {
///     static A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
///     static B: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
/// }
/// fn push<T: 'static + Copy>(v: T) -> Option<usize> {
///     polyhead_tensor::local::with_local(&A, &B, |list: &mut Vec<T>| {
///         list.push(v);
///         list.len()
///     })
/// }
/// assert_eq!(push(1.0_f64), Some(1));
/// assert_eq!(push(2.0_f32), Some(1));
/// assert_eq!(push(3_u8), None);
/// ```
pub fn with_local<A: 'static, B: 'static, X: 'static, R>(
    a: &'static LocalKey<RefCell<A>>,
    b: &'static LocalKey<RefCell<B>>,
    f: impl FnOnce(&mut X) -> R,
) -> Option<R> {
    fn on<C: 'static, X: 'static, R>(
        key: &'static LocalKey<RefCell<C>>,
        f: impl FnOnce(&mut X) -> R,
    ) -> Option<R> {
        key.try_with(|cell| {
            let mut contents = cell.try_borrow_mut().ok()?;
            let contents: &mut dyn Any = &mut *contents;
            contents.downcast_mut::<X>().map(f)
        })
        .ok()
        .flatten()
    }
    use std::any::TypeId;
    if TypeId::of::<X>() == TypeId::of::<A>() {
        on(a, f)
    } else if TypeId::of::<X>() == TypeId::of::<B>() {
        on(b, f)
    } else {
        None
    }
}
