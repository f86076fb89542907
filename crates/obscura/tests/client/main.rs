//! Black-box tests of the client CLI and SDK against real relay and guardian
//! processes (`obscura relay`, `obscura guardian`, `obscura dev`).

mod dev;
mod messaging;
mod support;
mod vault;
