/* fixtures.h — helpers for the safetensors, model and gen_model suites: a scratch
 * folder under $OSPREY_TEST_TMP (else /tmp), removed again, and small file utilities. */
#ifndef OSPREY_TEST_FIXTURES_H
#define OSPREY_TEST_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

#define FIXTURE_PATH 4096

/* Creates a fresh empty folder; path gets FIXTURE_PATH bytes. Returns 0 or -errno. */
int fixture_tmpdir(char *path);
/* Removes a folder and everything in it. */
void fixture_rmtree(const char *path);
/* Writes len bytes to dir/name (dir may be NULL: name is the path). Returns 0 or -errno. */
int fixture_write(const char *dir, const char *name, const void *data, size_t len);
/* Generates a preset model into dir with gen_model_write; returns its result. */
int fixture_gen(const char *dir, const char *preset, uint64_t seed);
/* XXH64 of a whole file; 0 when it cannot be read. */
uint64_t fixture_hash(const char *dir, const char *name);

#endif
