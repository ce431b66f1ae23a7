// `sqlx::migrate!` embeds the migration directories at compile time, but cargo does not
// know to rebuild when a migration is added without a change to the code: tell it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations-postgres");
}
