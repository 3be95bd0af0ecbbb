// zstd from the system (Debian's libzstd-dev), for zstd image layers.
#include <zstd.h>
#include <zstd_errors.h>
