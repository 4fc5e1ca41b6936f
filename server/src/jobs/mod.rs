//! Background work, each loop in its own module: none lives in `app/` or `startup.rs`.
