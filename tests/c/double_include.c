/* A second translation unit including the header (twice): catches definitions in the header
 * that would collide at link time, and a broken include guard. */
#include "common.h"
#include "tessera.h"
#include "tessera.h"

unsigned tessera_test_second_unit(void) {
  return (unsigned)TESSERA_OK + (unsigned)TESSERA_VERSION_MAJOR * 0u;
}
