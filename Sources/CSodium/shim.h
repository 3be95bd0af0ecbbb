// libsodium from Debian's libsodium-dev (installed by scripts/setup.sh): NaCl box for xkeys.
#include <sodium.h>
