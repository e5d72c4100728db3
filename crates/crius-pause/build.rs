//! Links `crius-pause` statically: the pause image holds nothing but this
//! binary, so it cannot rely on a dynamic loader or a libc inside the
//! container. It becomes the only file of an image: no symbols in release.

fn main() {
    crius_static_link::link_bins_statically(&crius_static_link::Options {
        extra_libs: &[],
        strip_release: true,
        pie: true,
    });
}
