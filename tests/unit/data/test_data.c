/* Tests for data/: NONMEM conventions, number parsing, errors, and the reference datasets. */
#include "data/data.h"

#include "common/popk_test.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static popk_error err;

static popk_data *parse(const char *text)
{
    return popk_data_parse("t.csv", text, strlen(text), &err);
}

/* Parse text that must fail; check the location and that the message contains want. */
static void expect_error(const char *text, int line, int column, const char *want)
{
    popk_data *d = parse(text);
    CU_ASSERT_PTR_NULL(d);
    popk_data_free(d);
    CU_ASSERT_EQUAL(err.line, line);
    CU_ASSERT_EQUAL(err.column, column);
    CU_ASSERT_STRING_EQUAL(err.file, "t.csv");
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, want));
    if (err.line != line || err.column != column || !strstr(err.message, want))
        fprintf(stderr, "\n  got %d:%d: %s (wanted %d:%d: %s)\n", err.line, err.column, err.message,
                line, column, want);
}

static void test_basic(void)
{
    popk_data *d = parse("ID,TIME,DV,AMT,EVID,MDV,CMT,WT\n"
                         "1,0,0,100,1,1,1,70\n"
                         "1,1,5.5,0,0,0,2,70\n"
                         "2,0,0,50,1,1,1,80.5\n"
                         "2,2,3.25,0,0,0,2,81\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(d->nrec, 4);
    CU_ASSERT_EQUAL(d->nsub, 2);
    CU_ASSERT_EQUAL(d->ncov, 1);
    CU_ASSERT_STRING_EQUAL(d->path, "t.csv");
    CU_ASSERT_EQUAL(d->sub[1].id, 2);
    CU_ASSERT_EQUAL(d->sub[1].first, 2);
    CU_ASSERT_EQUAL(d->sub[1].n, 2);
    CU_ASSERT_EQUAL(d->sub[0].nobs, 1);
    CU_ASSERT_EQUAL(d->rec[0].amt, 100);
    CU_ASSERT_EQUAL(d->rec[0].evid, 1);
    CU_ASSERT_EQUAL(d->rec[1].dv, 5.5);
    CU_ASSERT_EQUAL(d->rec[1].cmt, 2);
    CU_ASSERT_EQUAL(d->rec[3].time, 2);
    CU_ASSERT_EQUAL(d->rec[3].line, 5);
    CU_ASSERT_EQUAL(d->cov[0].kind, POPK_COV_NUMERIC);
    CU_ASSERT_EQUAL(d->cov[0].values[2], 80.5);
    CU_ASSERT_EQUAL(popk_data_find_cov(d, "wt"), 0);
    CU_ASSERT_EQUAL(popk_data_find_cov(d, "AGE"), -1);
    CU_ASSERT_TRUE(d->has_col[POPK_ITEM_EVID]);
    CU_ASSERT_FALSE(d->has_col[POPK_ITEM_RATE]);
    popk_data_free(d);
    popk_data_free(NULL);
}

/* BOM, CRLF, blanks, comments, whitespace separation, no final newline, case of names. */
static void test_layout(void)
{
    const char *variants[] = {
        "\xEF\xBB\xBFid,Time,dv\r\n1,0,4\r\n1,1,3\r\n",
        "ID,TIME,DV\n# comment\n1,0,4\n\n   \n@skipped,x\n1,1,3",
        "  ID  TIME\tDV\n 1 0 4\n1\t1   3\n",
        "# leading comment\nID , TIME , DV\n1 , 0 , 4\n1,1,3\n",
    };
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        popk_data *d = parse(variants[v]);
        CU_ASSERT_PTR_NOT_NULL(d);
        if (!d) {
            fprintf(stderr, "\n  variant %zu: %s\n", v, err.message);
            continue;
        }
        CU_ASSERT_EQUAL(d->nrec, 2);
        CU_ASSERT_EQUAL(d->nsub, 1);
        CU_ASSERT_EQUAL(d->ncov, 0);
        CU_ASSERT_EQUAL(d->rec[0].dv, 4);
        CU_ASSERT_EQUAL(d->rec[1].time, 1);
        CU_ASSERT_EQUAL(d->rec[1].dv, 3);
        CU_ASSERT_EQUAL(d->sub[0].nobs, 2);
        popk_data_free(d);
    }
}

/* '.' is 0 in standard items, missing in DV of observations and in covariates; EVID and MDV
 * are derived when absent. */
static void test_missing_and_derived(void)
{
    popk_data *d = parse("ID,TIME,DV,AMT,RATE,SS,II,ADDL,WT\n"
                         "1,0,.,100,.,.,12,3,.\n" /* dose: EVID 1, MDV 1 */
                         "1,1,.,.,0,0,0,0,70\n"   /* missing DV: MDV 1, EVID 2 */
                         "1,2,4.5,0,0,0,0,0,70\n" /* observation */
                         "1,3,0,0,5,1,0,0,70\n"   /* SS constant infusion: dose */
                         "1,4,,,,,,,\n");         /* empty fields are '.' too */
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    const popk_record *r = d->rec;
    CU_ASSERT_EQUAL(r[0].evid, 1);
    CU_ASSERT_EQUAL(r[0].mdv, 1);
    CU_ASSERT_EQUAL(r[0].dv, 0);
    CU_ASSERT_EQUAL(r[0].rate, 0);
    CU_ASSERT_EQUAL(r[0].addl, 3);
    CU_ASSERT_EQUAL(r[1].evid, 2);
    CU_ASSERT_EQUAL(r[1].mdv, 1);
    CU_ASSERT_TRUE(isnan(r[1].dv)); /* no value given, and not a dose */
    CU_ASSERT_EQUAL(r[2].evid, 0);
    CU_ASSERT_EQUAL(r[2].mdv, 0);
    CU_ASSERT_EQUAL(r[3].evid, 1);
    CU_ASSERT_EQUAL(r[3].ss, 1);
    CU_ASSERT_EQUAL(r[3].rate, 5);
    CU_ASSERT_TRUE(isnan(d->cov[0].values[0]));
    CU_ASSERT_TRUE(isnan(d->cov[0].values[4]));
    CU_ASSERT_EQUAL(d->cov[0].values[1], 70);
    CU_ASSERT_EQUAL(r[4].evid, 2);
    CU_ASSERT_EQUAL(d->sub[0].nobs, 1);
    popk_data_free(d);

    /* With EVID given, a missing DV on an observation record is NaN when MDV says skip. */
    d = parse("ID,TIME,DV,EVID,MDV\n1,0,.,0,1\n1,1,2,0,0\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_TRUE(isnan(d->rec[0].dv));
    CU_ASSERT_EQUAL(d->rec[0].mdv, 1);
    CU_ASSERT_EQUAL(d->sub[0].nobs, 1);
    popk_data_free(d);

    /* SS with AMT 0 and RATE 0 (steady state of endogenous input) is a dose, even without an
     * EVID column; II must then be 0. */
    d = parse("ID,TIME,DV,AMT,RATE,SS,II\n1,0,.,0,0,1,0\n1,1,2,0,0,0,0\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(d->rec[0].evid, 1);
    CU_ASSERT_EQUAL(d->rec[0].mdv, 1);
    CU_ASSERT_EQUAL(d->rec[0].dv, 0);
    CU_ASSERT_EQUAL(d->rec[1].evid, 0);
    popk_data_free(d);

    /* MDV given, EVID absent: MDV 1 on a non-dose is EVID 2; without a DV column DV is 0. */
    d = parse("ID,TIME,MDV\n1,0,1\n1,1,0\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(d->rec[0].evid, 2);
    CU_ASSERT_EQUAL(d->rec[1].evid, 0);
    CU_ASSERT_EQUAL(d->rec[1].dv, 0);
    popk_data_free(d);
}

/* A repeated ID after another subject is a new subject (NONMEM); time may go back at a
 * reset (EVID 3 or 4) and at a new subject. */
static void test_subjects_and_resets(void)
{
    popk_data *d = parse("ID,TIME,DV,AMT,EVID\n"
                         "1,0,0,10,1\n1,5,2,0,0\n"
                         "2,0,0,10,1\n"
                         "1,0,0,10,4\n1,3,1,0,0\n1,1,0,0,3\n1,2,1,0,0\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(d->nsub, 3);
    CU_ASSERT_EQUAL(d->sub[2].id, 1);
    CU_ASSERT_EQUAL(d->sub[2].first, 3);
    CU_ASSERT_EQUAL(d->sub[2].n, 4);
    CU_ASSERT_EQUAL(d->sub[2].nobs, 2);
    popk_data_free(d);
}

static void test_categorical(void)
{
    popk_data *d = parse("ID TIME DV SEX CYP\n"
                         "1 0 1 male NM\n1 1 2 male .\n2 0 1 female PM\n"
                         "3 0 1 . UM\n4 0 1 female 2\n4 1 1 male Ünïcode\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    int sex = popk_data_find_cov(d, "sex"), cyp = popk_data_find_cov(d, "CYP");
    CU_ASSERT_EQUAL_FATAL(sex, 0);
    CU_ASSERT_EQUAL_FATAL(cyp, 1);
    const popk_covariate *s = &d->cov[sex], *c = &d->cov[cyp];
    CU_ASSERT_EQUAL(s->kind, POPK_COV_CATEGORICAL);
    CU_ASSERT_EQUAL_FATAL(s->nlevels, 2);
    CU_ASSERT_STRING_EQUAL(s->levels[0], "male");
    CU_ASSERT_STRING_EQUAL(s->levels[1], "female");
    CU_ASSERT_EQUAL(s->values[2], 1);
    CU_ASSERT_EQUAL(s->values[5], 0);
    CU_ASSERT_TRUE(isnan(s->values[3]));
    /* In a text column numbers are levels too, in order of first appearance. */
    CU_ASSERT_EQUAL_FATAL(c->nlevels, 5);
    CU_ASSERT_STRING_EQUAL(c->levels[3], "2");
    CU_ASSERT_STRING_EQUAL(c->levels[4], "Ünïcode");
    CU_ASSERT_TRUE(isnan(c->values[1]));
    CU_ASSERT_EQUAL(c->values[4], 3);
    popk_data_free(d);
}

/* Many distinct levels (hash table growth) keep their order and identity. */
static void test_many_levels(void)
{
    enum { N = 3000 };
    char *text = malloc(N * 32 + 64);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    size_t len = (size_t)sprintf(text, "ID,TIME,LAB\n");
    for (int i = 0; i < N; i++)
        len += (size_t)sprintf(text + len, "1,%d,L%d\n", i, (i * 7919) % 1000);
    popk_data *d = popk_data_parse("t.csv", text, len, &err);
    free(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(d->cov[0].nlevels, 1000);
    int ok = 1;
    for (int i = 0; i < N; i++) {
        char want[16];
        sprintf(want, "L%d", (i * 7919) % 1000);
        ok &= !strcmp(d->cov[0].levels[(int)d->cov[0].values[i]], want);
    }
    CU_ASSERT_TRUE(ok);
    popk_data_free(d);
}

/* Every accepted number equals strtod's correctly rounded value, bit for bit; -0 is +0. */
static void test_numbers(void)
{
    const char *nums[] = {
        "0",
        "-0",
        "+0.0",
        "-0e5",
        "1",
        "-1",
        "0.1",
        ".5",
        "5.",
        "-.25",
        "1e3",
        "1E-3",
        "2.5e+2",
        "0.30000000000000004",
        "123456789012345678",
        "1234567890123456789012345",
        "9007199254740993",
        "1.7976931348623157e308",
        "4.9e-324",
        "2.2250738585072014e-308",
        "1e-400",
        "0.000000000000000000000000000001234",
        "3.14159265358979323846264338327950",
        "1e22",
        "1e23",
        "8.589973e9",
        "72057594037927945",
        "0.0001220703125",
    };
    char text[4096];
    size_t len = (size_t)sprintf(text, "ID,TIME,X\n");
    size_t n = sizeof nums / sizeof nums[0];
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(text + len, "1,%zu,%s\n", i, nums[i]);
    popk_data *d = popk_data_parse("t.csv", text, len, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    for (size_t i = 0; i < n; i++) {
        double want = strtod(nums[i], NULL);
        if (want == 0)
            want = 0.0; /* popk reads -0 as +0 */
        double got = d->cov[0].values[i];
        CU_ASSERT_EQUAL(memcmp(&got, &want, sizeof got), 0);
        if (memcmp(&got, &want, sizeof got))
            fprintf(stderr, "\n  %s: got %.17g want %.17g\n", nums[i], got, want);
    }
    popk_data_free(d);
}

static void test_errors(void)
{
    const char *h = "ID,TIME,DV,AMT,EVID,MDV,CMT\n";
    char buf[512];
    expect_error("", 1, 1, "empty file");
    expect_error("\n\n# only comments\n", 1, 1, "empty file");
    expect_error("ID,TIME\n\n", 1, 1, "no data records");
    expect_error("ID,DV\n1,2\n", 1, 1, "no TIME column");
    expect_error("ID,TIME,Dv,dV\n1,2,3,4\n", 1, 12, "duplicate column name 'dV'");
    snprintf(buf, sizeof buf, "%s1,0,0,100,1,1,1\n1,2,5,0,0,0,2\n1,1,5,0,0,0,2\n", h);
    expect_error(buf, 4, 3, "TIME 1 is before the previous record's 2 (line 3)");
    snprintf(buf, sizeof buf, "%s1,0,0,100,1,1,1,8\n", h);
    expect_error(buf, 2, 17, "more fields than the header's 7");
    snprintf(buf, sizeof buf, "%s1,0,0,100,7,1,1\n", h);
    expect_error(buf, 2, 11, "unknown EVID 7");
    snprintf(buf, sizeof buf, "%s1,0,0,1e999,1,1,1\n", h);
    expect_error(buf, 2, 7, "out of range");
    snprintf(buf, sizeof buf, "%s1,0,NaN,0,0,0,1\n", h);
    expect_error(buf, 2, 5, "'NaN' in column DV");
    snprintf(buf, sizeof buf, "%s1,0,Infinity,0,0,0,1\n", h);
    expect_error(buf, 2, 5, "'Infinity' in column DV");
    expect_error("ID,TIME,CMT\n1,0,1.5\n", 2, 5, "CMT 1.5: must be an integer");
    expect_error("ID,TIME,ADDL,II,AMT\n1,0,-1,12,5\n", 2, 5, "ADDL -1");
    expect_error("ID,TIME,II,AMT\n1,0,-12,5\n", 2, 5, "II -12 is negative");
    expect_error("ID,TIME,AMT,SS,II\n1,0,5,2,0\n", 2, 7, "SS 2 needs II > 0");
    /* The column counts characters, not bytes. */
    expect_error("ID,TIME,SITE,DV\n1,0,Zürich,x\n", 2, 12, "non-numeric value 'x' in column DV");
    expect_error("ID,TIME\n1,0\n\xC3\x28\n", 3, 1, "invalid UTF-8 (byte 0xC3)");
    expect_error("ID,TIME\n1,0\n\xED\xA0\x80\n", 3, 1, "invalid UTF-8");   /* surrogate */
    expect_error("ID,TIME\n1,0\n\xE0\x80\x80\n", 3, 1, "invalid UTF-8");   /* overlong */
    expect_error("ID,TIME\n1,0\n\xF5\x80\x80\x80\n", 3, 1, "invalid UTF-8");
    expect_error("ID,TIME\n1,0\n1,\xF0\x9F\x98\n", 3, 3, "invalid UTF-8"); /* cut short */
    /* A four-byte character is one column. */
    expect_error("ID,TIME,NOTE,DV\n1,0,\xF0\x9F\x98\x80,x\n", 2, 7, "non-numeric value 'x'");
    expect_error("ID,TIME\n1,\"0\"\n", 2, 3, "quotes are not supported");
    popk_data *d = popk_data_parse("t.csv", "ID,TIME\n1,0\0\n", 13, &err);
    CU_ASSERT_PTR_NULL(d);
    CU_ASSERT_EQUAL(err.line, 2);
    CU_ASSERT_EQUAL(err.column, 4);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "NUL byte"));
    CU_ASSERT_PTR_NULL(popk_data_read("/nonexistent/x.csv", &err));
    CU_ASSERT_EQUAL(err.code, POPK_ERR_IO);
    CU_ASSERT_PTR_NULL(popk_data_read(popk_test_src("datasets"), &err));
    CU_ASSERT_EQUAL(err.code, POPK_ERR_IO);
}

/* Columns beyond the limit are refused at the first one too many. */
static void test_limits(void)
{
    enum { NCOL = 100000 };
    char *text = malloc(NCOL * 8 + 16);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    size_t len = (size_t)sprintf(text, "ID,TIME");
    int col_4097 = 0;
    for (int c = 3; c <= NCOL; c++) {
        if (c == 4097)
            col_4097 = (int)len + 2;
        len += (size_t)sprintf(text + len, ",C%d", c);
    }
    text[len++] = '\n';
    popk_data *d = popk_data_parse("t.csv", text, len, &err);
    free(text);
    CU_ASSERT_PTR_NULL(d);
    CU_ASSERT_EQUAL(err.code, POPK_ERR_LIMIT);
    CU_ASSERT_EQUAL(err.line, 1);
    CU_ASSERT_EQUAL(err.column, col_4097);
}

/* Random byte edits of a valid file: every outcome is a dataset or a located error. */
static void test_mutations(void)
{
    FILE *fp = fopen(popk_test_src("datasets/theo_sd.csv"), "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    char orig[8192];
    size_t len = fread(orig, 1, sizeof orig, fp);
    fclose(fp);
    static const char alphabet[] = "0123456789.,-+eE \t\n\r#@x\"\xC3\x80\0";
    uint32_t seed = 12345;
    int ok = 1, accepted = 0;
    for (int trial = 0; trial < 400; trial++) {
        char buf[8192];
        memcpy(buf, orig, len);
        for (int k = 0; k < 1 + trial % 4; k++) {
            seed = seed * 1664525u + 1013904223u;
            size_t pos = (seed >> 8) % len;
            seed = seed * 1664525u + 1013904223u;
            buf[pos] = alphabet[(seed >> 8) % (sizeof alphabet - 1)];
        }
        popk_data *d = popk_data_parse("m.csv", buf, len, &err);
        if (d) {
            accepted++;
            ok &= d->nrec > 0 && d->nsub > 0;
        } else {
            ok &= err.line >= 1 && err.column >= 1 && err.message[0] != '\0';
        }
        popk_data_free(d);
    }
    CU_ASSERT_TRUE(ok);
    CU_ASSERT_TRUE(accepted > 0 && accepted < 400);
}

/* ---- Reference datasets: counts published in refdata/README.md, and every value against an
 * independent line-by-line strtod reading. */

static char refdir[4096];

static int ref_init(void)
{
    const char *root = getenv("POPK_SOURCE_ROOT");
    struct stat st;
    snprintf(refdir, sizeof refdir, "%s/tests/reference/data", root ? root : ".");
    if (stat(refdir, &st) != 0 || !S_ISDIR(st.st_mode))
        refdir[0] = '\0';
    return 0;
}

/* Compare every field of every line with strtod ('.' = missing). Returns mismatches. */
static int compare_with_strtod(const char *path, const popk_data *d)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 1;
    char line[4096], header[4096];
    if (!fgets(header, sizeof header, fp)) {
        fclose(fp);
        return 1;
    }
    char *names[64];
    int ncol = 0;
    for (char *tok = strtok(header, ",\n"); tok && ncol < 64; tok = strtok(NULL, ",\n"))
        names[ncol++] = tok;
    int bad = 0;
    size_t r = 0, k = 0;
    while (fgets(line, sizeof line, fp) && r < d->nrec) {
        const popk_record *rec = &d->rec[r];
        while (k < d->nsub && r >= d->sub[k].first + d->sub[k].n)
            k++;
        char *p = line;
        for (int c = 0; c < ncol; c++) {
            char *end;
            int missing = !strncmp(p, ".,", 2) || !strncmp(p, ".\n", 2);
            double v = missing ? NAN : strtod(p, &end);
            p = strchr(p, ',');
            p = p ? p + 1 : line + strlen(line);
            double got;
            int j = popk_data_find_cov(d, names[c]);
            if (j >= 0)
                got = d->cov[j].values[r];
            else if (!strcmp(names[c], "ID"))
                got = k < d->nsub ? d->sub[k].id : NAN;
            else if (!strcmp(names[c], "TIME"))
                got = rec->time;
            else if (!strcmp(names[c], "DV"))
                got = rec->dv;
            else if (!strcmp(names[c], "AMT"))
                got = rec->amt;
            else if (!strcmp(names[c], "RATE"))
                got = rec->rate;
            else if (!strcmp(names[c], "II"))
                got = rec->ii;
            else if (!strcmp(names[c], "EVID"))
                got = rec->evid;
            else if (!strcmp(names[c], "MDV"))
                got = rec->mdv;
            else if (!strcmp(names[c], "CMT"))
                got = rec->cmt;
            else if (!strcmp(names[c], "SS"))
                got = rec->ss;
            else if (!strcmp(names[c], "ADDL"))
                got = rec->addl;
            else if (!strcmp(names[c], "DVID"))
                got = rec->dvid;
            else
                got = NAN, bad++;
            if (!(got == v || (isnan(got) && isnan(v))))
                bad++;
        }
        r++;
    }
    fclose(fp);
    return bad + (r != d->nrec);
}

static void check_ref(const char *rel, size_t nrec, size_t nsub, size_t nobs, size_t ndose)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", refdir, rel);
    if (access(path, R_OK) != 0) /* the bundled datasets live in datasets/ */
        snprintf(path, sizeof path, "%s/datasets/%s", getenv("POPK_SOURCE_ROOT") ? getenv("POPK_SOURCE_ROOT") : ".", rel);
    popk_data *d = popk_data_read(path, &err);
    CU_ASSERT_PTR_NOT_NULL(d);
    if (!d) {
        fprintf(stderr, "\n  %s: %s\n", rel, err.message);
        return;
    }
    size_t obs = 0, doses = 0, sum_n = 0, sum_obs = 0;
    for (size_t i = 0; i < d->nrec; i++) {
        obs += d->rec[i].evid == 0 && d->rec[i].mdv == 0;
        doses += d->rec[i].evid == 1 || d->rec[i].evid == 4;
    }
    for (size_t k = 0; k < d->nsub; k++) {
        CU_ASSERT_EQUAL(d->sub[k].first, sum_n);
        sum_n += d->sub[k].n;
        sum_obs += d->sub[k].nobs;
    }
    CU_ASSERT_EQUAL(d->nrec, nrec);
    CU_ASSERT_EQUAL(d->nsub, nsub);
    CU_ASSERT_EQUAL(obs, nobs);
    CU_ASSERT_EQUAL(sum_obs, nobs);
    CU_ASSERT_EQUAL(sum_n, nrec);
    CU_ASSERT_EQUAL(doses, ndose);
    CU_ASSERT_EQUAL(compare_with_strtod(path, d), 0);
    popk_data_free(d);
}

static void test_refdata(void)
{
    if (!refdir[0]) {
        fprintf(stderr, "\n  skipped: tests/reference/data not found\n");
        return;
    }
    /* refdata/README.md: records, subjects, observations (EVID 0), dose records. */
    check_ref("theo_sd.csv", 144, 12, 132, 12);
    check_ref("warfarin.csv", 515, 32, 483, 32);
    check_ref("wang2007.csv", 20, 10, 20, 0);
    check_ref("wang2007_dosed.csv", 30, 10, 20, 10);
    check_ref("nmtest.csv", 7157, 54, 7074, 81); /* 78 EVID 1 + 3 EVID 4 */
    static const struct {
        const char *file;
        size_t obs;
    } acop[] = {
        {"Bolus_1CPT", 6951},    {"Bolus_1CPTMM", 6950},    {"Bolus_2CPT", 6960},
        {"Bolus_2CPTMM", 6960},  {"Infusion_1CPT", 6953},   {"Infusion_1CPTMM", 6955},
        {"Infusion_2CPT", 6960}, {"Infusion_2CPTMM", 6960}, {"Oral_1CPT", 6947},
        {"Oral_1CPTMM", 6959},   {"Oral_2CPT", 6960},       {"Oral_2CPTMM", 6960},
    };
    for (size_t i = 0; i < sizeof acop / sizeof acop[0]; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "acop/%s.csv", acop[i].file);
        check_ref(rel, 7920, 120, acop[i].obs, 960);
    }
    /* nmtest: CP is '.' exactly on the records of IDs >= 100. */
    char path[8192];
    snprintf(path, sizeof path, "%s/nmtest.csv", refdir);
    popk_data *d = popk_data_read(path, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    int cp = popk_data_find_cov(d, "CP");
    CU_ASSERT_TRUE_FATAL(cp >= 0);
    int ok = 1;
    for (size_t k = 0; k < d->nsub; k++)
        for (size_t i = d->sub[k].first; i < d->sub[k].first + d->sub[k].n; i++)
            ok &= (d->sub[k].id >= 100) == (isnan(d->cov[cp].values[i]) != 0);
    CU_ASSERT_TRUE(ok);
    popk_data_free(d);
}

/* The bundled copies read like the reference files (theophylline: WT 54.6 to 86.4 kg). */
static void test_bundled(void)
{
    popk_data *d = popk_data_read(popk_test_src("datasets/theo_sd.csv"), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(d->nsub, 12);
    CU_ASSERT_EQUAL(compare_with_strtod(popk_test_src("datasets/theo_sd.csv"), d), 0);
    int wt = popk_data_find_cov(d, "WT");
    CU_ASSERT_EQUAL_FATAL(wt, 0);
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < d->nrec; i++)
        lo = fmin(lo, d->cov[wt].values[i]), hi = fmax(hi, d->cov[wt].values[i]);
    CU_ASSERT_EQUAL(lo, 54.6);
    CU_ASSERT_EQUAL(hi, 86.4);
    popk_data_free(d);
    const char *files[] = {"datasets/warfarin.csv", "datasets/wang2007.csv"};
    for (int f = 0; f < 2; f++) {
        d = popk_data_read(popk_test_src(files[f]), &err);
        CU_ASSERT_PTR_NOT_NULL(d);
        if (d)
            CU_ASSERT_EQUAL(compare_with_strtod(popk_test_src(files[f]), d), 0);
        popk_data_free(d);
    }
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("data", NULL, NULL);
    CU_add_test(s, "basic", test_basic);
    CU_add_test(s, "layout", test_layout);
    CU_add_test(s, "missing_and_derived", test_missing_and_derived);
    CU_add_test(s, "subjects_and_resets", test_subjects_and_resets);
    CU_add_test(s, "categorical", test_categorical);
    CU_add_test(s, "many_levels", test_many_levels);
    CU_add_test(s, "numbers", test_numbers);
    CU_add_test(s, "errors", test_errors);
    CU_add_test(s, "limits", test_limits);
    CU_add_test(s, "mutations", test_mutations);
    CU_add_test(s, "bundled", test_bundled);
    CU_pSuite r = CU_add_suite("refdata", ref_init, NULL);
    CU_add_test(r, "refdata", test_refdata);
    return popk_test_run();
}
