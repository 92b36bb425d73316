// `sqlx::migrate!` embeds the migrations at compile time; a new file in `migrations/` must
// rebuild this crate (cargo only tracks the files the macro already read).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
