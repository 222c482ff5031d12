//! A library call that may panic on damaged input (redb opening a corrupt file panics with
//! "internal error: entered unreachable code" inside its own code), run so that the panic
//! becomes an error: caught with `catch_unwind`, and kept off stderr, so the user gets one
//! clear error naming the file rather than a "panicked at" line naming a dependency's source.
//!
//! The panic hook is wrapped once: while a guarded call runs on a thread, a panic on that
//! thread is recorded for the caller instead of printed; every other panic goes to the hook
//! that was there before. This needs `panic = "unwind"` (Cargo.toml sets no `panic = "abort"`).

use std::cell::{Cell, RefCell};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs a guarded call.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    /// The message of the panic a guarded call raised.
    static MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Runs `f`; a panic in it is returned as its message (nothing printed).
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) {
                let text = payload_text(info.payload());
                MESSAGE.with(|m| *m.borrow_mut() = Some(text));
            } else {
                previous(info);
            }
        }));
    });
    let was = GUARDED.with(|g| g.replace(true));
    // `f` is not used again after a panic: whatever it left half done is dropped with it.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    result.map_err(|payload| {
        MESSAGE
            .with(|m| m.borrow_mut().take())
            .unwrap_or_else(|| payload_text(payload.as_ref()))
    })
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    /// A panic in the guarded call is its error; the next call runs normally.
    #[test]
    fn a_panic_becomes_its_message() {
        let caught: Result<(), String> = super::catch(|| panic!("entered unreachable code"));
        assert_eq!(caught, Err("entered unreachable code".to_string()));
        assert_eq!(super::catch(|| 7), Ok(7));
    }
}
