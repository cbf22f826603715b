/* gpu_main.c — build/osprey-gpu-tests: every CUDA op against the CPU backend, the cache
 * write's exact slots, graphs against eager runs, and (--bench) the kernel benchmarks.
 * Without a GPU it prints "skipped: no CUDA device" and exits 0; otherwise it runs every
 * case, prints one table row per case and exits 1 when any failed.
 *   osprey-gpu-tests [--bench | --bench-fp8 | --bench-gemv | --bench-moe]
 *                    [--only SUBSTRING[,SUBSTRING...]]
 *                    [--list] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/base/util.h"
#include "tests/gpu/gpu_test.h"

#ifdef OSPREY_CUDA
#include "engine/cuda/backend_cuda.h"   /* cuda_device_count */

static const struct gt_case *const all_cases[] = {
    gt_cases_cache_update, gt_cases_rope, gt_cases_rmsnorm, gt_cases_embedding,
    gt_cases_activation, gt_cases_matmul, gt_cases_attention, gt_cases_sampling,
    gt_cases_kv_groups, gt_cases_graph, gt_cases_runner, gt_cases_scale, gt_cases_fp8_cache,
    gt_cases_fp8_gemm, gt_cases_moe, gt_cases_tp, gt_cases_runner_masks,
    gt_cases_pieces,
};

/* True when name contains one of the comma-separated substrings of list. */
static bool matches(const char *name, const char *list)
{
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        char sub[128];

        if (n > 0 && n < sizeof sub) {
            memcpy(sub, p, n);
            sub[n] = '\0';
            if (strstr(name, sub))
                return true;
        }
        p += n + (p[n] == ',');
    }
    return false;
}

static void usage(void)
{
    printf("usage: osprey-gpu-tests [--bench | --bench-fp8 | --bench-gemv | --bench-moe] "
           "[--only SUBSTRING[,SUBSTRING...]] [--list]\n");
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    bool bench = false, bench_fp8 = false, bench_gemv = false, bench_moe = false, list = false;
    int ran = 0, failed = 0;
    double t0 = now_s();

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bench"))
            bench = true;
        else if (!strcmp(argv[i], "--bench-fp8"))
            bench_fp8 = true;
        else if (!strcmp(argv[i], "--bench-gemv"))
            bench_gemv = true;
        else if (!strcmp(argv[i], "--bench-moe"))
            bench_moe = true;
        else if (!strcmp(argv[i], "--list"))
            list = true;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (list) {
        for (size_t f = 0; f < ARRAY_LEN(all_cases); f++)
            for (const struct gt_case *c = all_cases[f]; c->name; c++)
                printf("%s\n", c->name);
        return 0;
    }
    if (cuda_device_count() <= 0) {
        printf("skipped: no CUDA device\n");
        return 0;
    }
    log_level = LL_WARN;
    if (bench)
        return gt_bench();
    if (bench_fp8) {   /* the fp8 GEMM rows alone (they are also the end of --bench) */
        gt_bench_fp8_gemm();
        return 0;
    }
    if (bench_gemv) {   /* the bf16 decode GEMV against cuBLAS */
        gt_bench_gemv();
        return 0;
    }
    if (bench_moe)
        return gt_bench_moe();

    printf("%-44s %-5s %11s %11s  %s\n", "case", "", "max_abs", "nmse", "covers / first failure");
    for (size_t f = 0; f < ARRAY_LEN(all_cases); f++)
        for (const struct gt_case *c = all_cases[f]; c->name; c++) {
            struct gt t = { .name = c->name, .rng = 0x05b7e7 };
            double c0 = now_s();

            if (only && !matches(c->name, only))
                continue;
            for (const char *p = c->name; *p; p++)
                t.rng = t.rng * 131 + (unsigned char)*p;   /* a fixed seed per case */
            c->fn(&t);
            gt_backends_free(&t);
            gt_check(&t, t.checks > 0, "the case checked nothing");
            ran++;
            failed += t.failures > 0;
            printf("%-44s %-5s %11.3g %11.3g  %s%s(%.1fs)\n", c->name, t.failures ? "FAIL" : "ok",
                   t.max_abs, t.nmse, t.failures ? t.first_failure : t.note,
                   t.failures || t.note[0] ? " " : "", now_s() - c0);
            fflush(stdout);
        }
    printf("\n%d cases, %d failed, %.1f s\n", ran, failed, now_s() - t0);
    return failed ? 1 : 0;
}

#else

int main(void)
{
    printf("skipped: no CUDA device (this build has no CUDA)\n");
    return 0;
}

#endif
