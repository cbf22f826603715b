/* test_deploy_units.c — what `make install` installs (scripts/install.sh, into a DESTDIR
 * staging root): the binary, both systemd units naming it, the example config, the nginx
 * site, its njs script and a replica list an admin's edit survives; and the units as
 * systemd itself judges them: `systemd-analyze verify` without a word and `systemd-analyze
 * security` at or below 2.0 for osprey.service and an instance of osprey@.service. Where
 * systemd-analyze is absent that case is left out of the run, with the reason printed. */
#include <check.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/deploy/deploy_util.h"
#include "tests/integration/it_util.h"   /* it_run */
#include "engine/base/util.h"

/* A temporary folder for one test, removed by tmp_remove. */
static void tmp_make(char *dir, size_t cap)
{
    const char *tmp = getenv("OSPREY_TEST_TMP");

    snprintf(dir, cap, "%s/osprey-install.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
}

static void tmp_remove(const char *dir)
{
    char cmd[1200];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Runs scripts/install.sh with env (shell assignments) and the build of the daemon under
 * test; fails the test unless it exits 0. */
static void install(const char *env)
{
    char bin[1024], script[1024], cmd[4096], *out;
    int rc;

    snprintf(bin, sizeof bin, "%s", daemon_bin());
    if (bin[0] != '/') {
        char rel[1024];

        snprintf(rel, sizeof rel, "%s", bin);
        deploy_repo_file(rel, bin, sizeof bin);
    }
    deploy_repo_file("scripts/install.sh", script, sizeof script);
    snprintf(cmd, sizeof cmd, "%s BUILD='%s' '%s'", env, dirname(bin), script);
    rc = it_run(cmd, &out);
    ck_assert_msg(rc == 0, "%s: exit %d\n%s", cmd, rc, out);
    free(out);
}

static char *slurp(const char *dir, const char *rel)
{
    char path[1200], *text = NULL;
    size_t len;

    snprintf(path, sizeof path, "%s/%s", dir, rel);
    ck_assert_msg(read_file(path, &text, &len, NULL) == 0, "%s: not installed", path);
    return text;
}

START_TEST(make_install_puts_every_file_under_destdir_and_keeps_an_edited_replica_list)
{
    static const char *const files[] = {
        "usr/local/bin/osprey", "usr/local/lib/systemd/system/osprey.service",
        "usr/local/lib/systemd/system/osprey@.service", "etc/osprey/osprey.example.json",
        "etc/nginx/sites-available/osprey", "etc/nginx/osprey/osprey_route.js",
        "etc/nginx/osprey/replicas.conf",
    };
    char dir[600], env[800], path[1200];
    struct stat st;
    char *text;
    FILE *f;

    tmp_make(dir, sizeof dir);
    snprintf(env, sizeof env, "DESTDIR='%s' PREFIX=/usr/local SYSCONFDIR=/etc", dir);
    install(env);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        ck_assert_msg(stat(path, &st) == 0, "%s: %s", path, strerror(errno));
    }
    snprintf(path, sizeof path, "%s/usr/local/bin/osprey", dir);
    ck_assert_msg(access(path, X_OK) == 0, "%s is not executable", path);
    /* The units run what was installed, with the config of SYSCONFDIR. */
    text = slurp(dir, "usr/local/lib/systemd/system/osprey.service");
    ck_assert_ptr_nonnull(strstr(text, "\nExecStart=/usr/local/bin/osprey serve --config /etc/osprey/osprey.json "));
    free(text);
    text = slurp(dir, "usr/local/lib/systemd/system/osprey@.service");
    ck_assert_ptr_nonnull(strstr(text, "\nExecStart=/usr/local/bin/osprey serve --config /etc/osprey/%i.json "));
    ck_assert_ptr_nonnull(strstr(text, "\nEnvironment=CUDA_VISIBLE_DEVICES=%i\n"));
    free(text);

    /* An admin lists the replicas; installing again keeps the list. */
    snprintf(path, sizeof path, "%s/etc/nginx/osprey/replicas.conf", dir);
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    ck_assert_int_ge(fputs("server 10.0.0.7:8001;\n", f), 0);
    ck_assert_int_eq(fclose(f), 0);
    install(env);
    text = slurp(dir, "etc/nginx/osprey/replicas.conf");
    ck_assert_str_eq(text, "server 10.0.0.7:8001;\n");
    free(text);

    /* Another PREFIX moves the binary and what the units run. */
    tmp_remove(dir);
    tmp_make(dir, sizeof dir);
    snprintf(env, sizeof env, "DESTDIR='%s' PREFIX=/opt/osprey", dir);
    install(env);
    text = slurp(dir, "opt/osprey/lib/systemd/system/osprey.service");
    ck_assert_ptr_nonnull(strstr(text, "\nExecStart=/opt/osprey/bin/osprey serve "));
    free(text);
    tmp_remove(dir);
}
END_TEST

/* "→ Overall exposure level for osprey.service: 1.6 OK": the number, or -1. */
static double exposure(const char *out)
{
    const char *at = strstr(out, "Overall exposure level for ");

    if (!at || !(at = strstr(at, ": ")))
        return -1;
    return atof(at + 2);
}

START_TEST(the_units_pass_systemd_analyze_verify_and_security)
{
    char dir[600], env[1400], cmd[3000], analyze[1024], *out;
    const char *units[] = { "osprey.service", "osprey@.service", "osprey@0.service" };
    int rc;

    ck_assert_ptr_nonnull(deploy_which("systemd-analyze", analyze, sizeof analyze));
    /* Installed for real under a temporary PREFIX, not staged: verify checks that the
     * binary the units name exists. */
    tmp_make(dir, sizeof dir);
    snprintf(env, sizeof env, "PREFIX='%s' SYSCONFDIR='%s/etc'", dir, dir);
    install(env);
    /* An instance, as `systemctl start osprey@0` would make of the template. */
    snprintf(cmd, sizeof cmd, "cp '%s/lib/systemd/system/osprey@.service' '%s/lib/systemd/system/osprey@0.service'",
             dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    for (size_t i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "'%s' verify '%s/lib/systemd/system/%s'", analyze, dir, units[i]);
        rc = it_run(cmd, &out);
        ck_assert_msg(rc == 0 && !out[0], "%s: exit %d\n%s", cmd, rc, out);
        free(out);
    }
    for (size_t i = 0; i < 3; i += 2) {
        double level;

        /* --threshold=20: exit non-zero above an exposure of 2.0 (on systemd's 0-10 scale). */
        snprintf(cmd, sizeof cmd, "'%s' security --offline=true --threshold=20 --no-pager "
                 "'%s/lib/systemd/system/%s'", analyze, dir, units[i]);
        rc = it_run(cmd, &out);
        level = exposure(out);
        printf("systemd-analyze security %s: exposure %.1f (0 = locked down, 10 = exposed)\n", units[i], level);
        if (rc != 0 || level < 0 || level > 2.0)
            fprintf(stderr, "%s\n", out);      /* the table: too long for Check's message */
        ck_assert_msg(rc == 0 && level >= 0 && level <= 2.0, "%s: exit %d, exposure %.1f", cmd, rc, level);
        free(out);
    }
    tmp_remove(dir);
}
END_TEST

Suite *deploy_units_suite(void)
{
    Suite *s = suite_create("deploy_units");
    TCase *tc = tcase_create("install");
    const char *only = getenv("CK_RUN_SUITE");
    char analyze[1024];

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, make_install_puts_every_file_under_destdir_and_keeps_an_edited_replica_list);
    /* Left out rather than passed: a run without systemd-analyze checks less, and says so. */
    if (deploy_which("systemd-analyze", analyze, sizeof analyze))
        tcase_add_test(tc, the_units_pass_systemd_analyze_verify_and_security);
    else if (!only || !strcmp(only, "deploy_units"))
        printf("deploy_units: the_units_pass_systemd_analyze_verify_and_security skipped: systemd-analyze "
               "not found (Debian: apt-get install systemd)\n");
    suite_add_tcase(s, tc);
    return s;
}
