// Embeds an rpath to libtorch so the built binaries run without LD_LIBRARY_PATH, and keeps a
// CUDA libtorch's GPU library linked: nothing in the binary names a symbol of libtorch_cuda
// (its kernels register themselves when it is loaded), so the linker's --as-needed would drop
// it and libtorch would then see no GPU.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(dir) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
        let cuda = std::path::Path::new(&dir).join("lib/libtorch_cuda.so");
        if cuda.exists() {
            println!("cargo:rerun-if-changed={}", cuda.display());
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        } else {
            // Not `rerun-if-changed` on the missing file: cargo counts a missing file as changed
            // and would rerun this script, and relink everything, on every build.
            println!("cargo:rerun-if-changed={dir}/lib");
        }
    }
}
