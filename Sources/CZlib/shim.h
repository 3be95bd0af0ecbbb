// zlib from the system (Debian's zlib1g-dev), for gzip image layers.
#include <zlib.h>
