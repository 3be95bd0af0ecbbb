// V8 from Debian's libnode 18, found through pkg-config (`nex-libnode.pc`, written by scripts/setup.sh).
// Only the CV8 shim includes V8's C++ headers; this module exists to carry the include path and the link.
