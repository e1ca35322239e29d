/* Generated from the tessera-sdk package version by crates/tessera-sdk/tests/header.rs. Do not edit. */
#ifndef TESSERA_VERSION_H
#define TESSERA_VERSION_H

#define TESSERA_VERSION_MAJOR 0
#define TESSERA_VERSION_MINOR 1
#define TESSERA_VERSION_PATCH 0
#define TESSERA_VERSION_STRING "0.1.0"
/* One number for comparisons: (MAJOR << 16) | (MINOR << 8) | PATCH. */
#define TESSERA_VERSION_NUMBER ((TESSERA_VERSION_MAJOR << 16) | (TESSERA_VERSION_MINOR << 8) | TESSERA_VERSION_PATCH)

#endif /* TESSERA_VERSION_H */
