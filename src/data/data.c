/* data/data.c — NONMEM-format dataset reader: one buffer, one pass, FILE:LINE:COLUMN errors. */
#include "data/data.h"

#include "util/error.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* Limits that turn pathological input into a clear message instead of a slow crawl. */
#define MAX_LINE_BYTES (1u << 20)
#define MAX_COLUMNS 4096
#define MAX_RECORDS ((size_t)INT32_MAX - 1)
#define MAX_FILE_BYTES ((size_t)1 << 33)

static const char *const item_names[POPK_ITEM_N] = {
    "ID", "TIME", "DV", "AMT", "EVID", "MDV", "CMT", "RATE", "II", "ADDL", "SS", "DVID",
};

typedef struct {
    const char *s, *e; /* field text without surrounding blanks */
} field;

/* Text levels of one categorical covariate: open-addressing hash over (text, length) so a
 * column with many distinct values stays linear time. */
typedef struct {
    const char **text;
    size_t *len;
    size_t *count;
    int n, cap;
    int *slot; /* level index + 1, 0 = empty; nslot is a power of two */
    size_t nslot;
} level_table;

enum { COV_UNDECIDED = -1 };

typedef struct {
    const char *name;
    const char *buf, *end;
    popk_error *err;
    int comma; /* comma-separated; otherwise blanks separate fields */
    size_t ncol;
    int *col_item;       /* standard item of each column, or -1 */
    int *col_cov;        /* covariate of each column, or -1 */
    int *cov_kind;       /* COV_UNDECIDED or popk_cov_kind */
    level_table *levels; /* one per covariate */
    field *fields;       /* MAX_COLUMNS + 1 */
    popk_data *d;
    size_t rec_cap;
} parser;

static int char_column(const char *line, const char *at)
{
    int col = 1;
    for (const char *p = line; p < at; p++)
        if (((unsigned char)*p & 0xC0) != 0x80)
            col++;
    return col;
}

static popk_status fail(parser *P, popk_status code, int line, const char *line_start,
                        const char *at, const char *fmt, ...) POPK_PRINTF(6, 7);

static popk_status fail(parser *P, popk_status code, int line, const char *line_start,
                        const char *at, const char *fmt, ...)
{
    char msg[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int col = (line_start && at) ? char_column(line_start, at) : 1;
    return popk_error_set(P->err, code, P->name, line, col, "%s", msg);
}

/* Byte-level checks on the whole file before parsing, so binary data is named as such. */
static popk_status check_bytes(parser *P, const char *start)
{
    const unsigned char *p = (const unsigned char *)start, *end = (const unsigned char *)P->end;
    const char *why = NULL;
    unsigned badbyte = 0;
    while (p < end) {
        unsigned c = *p;
        if (c >= 0x20 && c < 0x7F) {
            p++;
            continue;
        }
        if (c == '\n' || c == '\t') {
            p++;
            continue;
        }
        if (c == '\r') {
            if (p + 1 == end || p[1] == '\n') {
                p++;
                continue;
            }
            why = "carriage return inside a line (only CRLF or LF line ends are accepted)";
            break;
        }
        if (c == 0) {
            why = "NUL byte: this is not a text file";
            break;
        }
        if (c < 0x80) {
            badbyte = c;
            why = "control character";
            break;
        }
        int n = -1; /* continuation bytes after a valid lead byte */
        if (c >= 0xC2 && c <= 0xDF)
            n = 1;
        else if (c >= 0xE0 && c <= 0xEF)
            n = 2;
        else if (c >= 0xF0 && c <= 0xF4)
            n = 3;
        int ok = n > 0 && end - p > n;
        for (int k = 1; ok && k <= n; k++)
            ok = (p[k] & 0xC0) == 0x80;
        /* Overlong three/four-byte forms, surrogates and code points above U+10FFFF. */
        if (ok && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0) ||
                   (c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90)))
            ok = 0;
        if (!ok) {
            badbyte = c;
            why = "invalid UTF-8";
            break;
        }
        p += n + 1;
    }
    if (!why)
        return POPK_OK;
    const char *bad = (const char *)p;
    int line = 1;
    const char *ls = start;
    for (const char *q = start; q < bad; q++)
        if (*q == '\n')
            line++, ls = q + 1;
    if (badbyte)
        return fail(P, POPK_ERR_DATA, line, ls, bad, "%s (byte 0x%02X): is this a binary file?",
                    why, badbyte);
    return fail(P, POPK_ERR_DATA, line, ls, bad, "%s", why);
}

typedef enum { NUM_OK, NUM_MISSING, NUM_TEXT, NUM_NONFINITE, NUM_RANGE } num_kind;

static const double exact_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int is_nonfinite_word(const char *s, const char *e)
{
    if (s < e && (*s == '+' || *s == '-'))
        s++;
    size_t n = (size_t)(e - s);
    return (n == 3 && (!strncasecmp(s, "nan", 3) || !strncasecmp(s, "inf", 3))) ||
           (n == 8 && !strncasecmp(s, "infinity", 8)) || (n == 2 && !strncasecmp(s, "na", 2));
}

/* Decimal numbers only ([+-]digits[.digits][e[+-]digits]); hex, nan and inf are refused.
 * Short numbers take Clinger's exact fast path; the rest go to strtod, which rounds
 * correctly. The buffer is NUL-terminated and e is followed by a separator, so strtod
 * stops at e. */
static num_kind parse_number(const char *s, const char *e, double *out)
{
    if (s == e || (e - s == 1 && *s == '.'))
        return NUM_MISSING;
    const char *p = s;
    int neg = 0;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    uint64_t mant = 0;
    int sig = 0, digits = 0, slow = 0;
    long exp10 = 0;
    for (; p < e && *p >= '0' && *p <= '9'; p++, digits++) {
        if (mant || *p != '0') {
            if (sig < 19)
                mant = mant * 10 + (uint64_t)(*p - '0'), sig++;
            else
                slow = 1;
        }
    }
    if (p < e && *p == '.') {
        for (p++; p < e && *p >= '0' && *p <= '9'; p++, digits++, exp10--) {
            if (mant || *p != '0') {
                if (sig < 19)
                    mant = mant * 10 + (uint64_t)(*p - '0'), sig++;
                else
                    slow = 1;
            }
        }
    }
    if (!digits)
        return is_nonfinite_word(s, e) ? NUM_NONFINITE : NUM_TEXT;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0;
        if (p < e && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p == e || *p < '0' || *p > '9')
            return NUM_TEXT;
        long x = 0;
        for (; p < e && *p >= '0' && *p <= '9'; p++)
            if (x < 100000)
                x = x * 10 + (*p - '0');
        exp10 += eneg ? -x : x;
    }
    if (p != e)
        return NUM_TEXT;
    double v;
    if (mant == 0) {
        v = 0.0; /* also turns -0 into +0 */
    } else if (!slow && mant <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22) {
        v = (double)mant;
        v = exp10 >= 0 ? v * exact_pow10[exp10] : v / exact_pow10[-exp10];
        if (neg)
            v = -v;
    } else {
        char *stop;
        v = strtod(s, &stop);
        if (stop != e)
            return NUM_TEXT;
        if (isinf(v))
            return NUM_RANGE;
        if (v == 0.0)
            v = 0.0;
    }
    *out = v;
    return NUM_OK;
}

/* Split [s,e) into at most max fields; returns the count, or max + 1 with fields[max] set to
 * the first field too many. */
static size_t split(const parser *P, const char *s, const char *e, field *f, size_t max)
{
    size_t n = 0;
    if (P->comma) {
        const char *p = s;
        for (;;) {
            const char *c = memchr(p, ',', (size_t)(e - p));
            const char *fe = c ? c : e;
            const char *fs = p;
            while (fs < fe && (*fs == ' ' || *fs == '\t'))
                fs++;
            while (fe > fs && (fe[-1] == ' ' || fe[-1] == '\t'))
                fe--;
            f[n].s = fs, f[n].e = fe;
            if (n == max)
                return max + 1;
            n++;
            if (!c)
                return n;
            p = c + 1;
        }
    }
    const char *p = s;
    for (;;) {
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        if (p == e)
            return n;
        const char *fs = p;
        while (p < e && *p != ' ' && *p != '\t')
            p++;
        f[n].s = fs, f[n].e = p;
        if (n == max)
            return max + 1;
        n++;
    }
}

static int item_index(const char *s, const char *e)
{
    size_t n = (size_t)(e - s);
    for (int i = 0; i < POPK_ITEM_N; i++)
        if (strlen(item_names[i]) == n && !strncasecmp(item_names[i], s, n))
            return i;
    return -1;
}

/* Display form of a field for messages: at most 40 bytes, cut on a character boundary. */
static int shown_len(const field *f)
{
    size_t n = (size_t)(f->e - f->s);
    if (n <= 40)
        return (int)n;
    n = 40;
    while (n > 0 && ((unsigned char)f->s[n] & 0xC0) == 0x80)
        n--;
    return (int)n;
}

static popk_status parse_header(parser *P, int line, const char *ls, const char *le)
{
    field *f = P->fields;
    size_t n = split(P, ls, le, f, MAX_COLUMNS);
    if (n > MAX_COLUMNS)
        return fail(P, POPK_ERR_LIMIT, line, ls, f[MAX_COLUMNS].s,
                    "too many columns: popk reads at most %d", MAX_COLUMNS);
    P->ncol = n;
    P->col_item = malloc(n * sizeof *P->col_item);
    P->col_cov = malloc(n * sizeof *P->col_cov);
    if (!P->col_item || !P->col_cov)
        return popk_error_set(P->err, POPK_ERR_NOMEM, P->name, line, 1, "out of memory");
    popk_data *d = P->d;
    size_t ncov = 0;
    for (size_t c = 0; c < n; c++) {
        const field *h = &f[c];
        if (h->s == h->e)
            return fail(P, POPK_ERR_DATA, line, ls, h->s, "empty column name in the header");
        for (const char *q = h->s; q < h->e; q++)
            if (*q == '"' || *q == '\'')
                return fail(
                    P, POPK_ERR_DATA, line, ls, q,
                    "quotes are not supported: write column names and values without quotes");
        double v;
        num_kind k = parse_number(h->s, h->e, &v);
        if (k == NUM_OK || k == NUM_RANGE || (k == NUM_MISSING && h->e - h->s == 1))
            return fail(P, POPK_ERR_DATA, line, ls, h->s,
                        "header row expected: '%.*s' is not a column name (the first line that "
                        "is not blank or a comment must name the columns)",
                        shown_len(h), h->s);
        for (size_t o = 0; o < c; o++)
            if ((size_t)(f[o].e - f[o].s) == (size_t)(h->e - h->s) &&
                !strncasecmp(f[o].s, h->s, (size_t)(h->e - h->s)))
                return fail(P, POPK_ERR_DATA, line, ls, h->s,
                            "duplicate column name '%.*s' (same as column %zu; names are "
                            "case-insensitive)",
                            shown_len(h), h->s, o + 1);
        int item = item_index(h->s, h->e);
        P->col_item[c] = item;
        P->col_cov[c] = item < 0 ? (int)ncov++ : -1;
        if (item >= 0)
            d->has_col[item] = 1;
    }
    if (!d->has_col[POPK_ITEM_ID] || !d->has_col[POPK_ITEM_TIME])
        return fail(P, POPK_ERR_DATA, line, ls, ls,
                    "no %s column in the header (ID and TIME are required)",
                    d->has_col[POPK_ITEM_ID] ? "TIME" : "ID");
    d->ncov = ncov;
    if (ncov) {
        d->cov = calloc(ncov, sizeof *d->cov);
        P->cov_kind = malloc(ncov * sizeof *P->cov_kind);
        P->levels = calloc(ncov, sizeof *P->levels);
        if (!d->cov || !P->cov_kind || !P->levels)
            return popk_error_set(P->err, POPK_ERR_NOMEM, P->name, line, 1, "out of memory");
    }
    for (size_t c = 0; c < n; c++) {
        int j = P->col_cov[c];
        if (j < 0)
            continue;
        size_t len = (size_t)(f[c].e - f[c].s);
        char *name = malloc(len + 1);
        double *values = malloc(P->rec_cap * sizeof *values);
        if (!name || !values) {
            free(name);
            free(values);
            return popk_error_set(P->err, POPK_ERR_NOMEM, P->name, line, 1, "out of memory");
        }
        memcpy(name, f[c].s, len);
        name[len] = '\0';
        d->cov[j].name = name;
        d->cov[j].values = values;
        d->cov[j].kind = POPK_COV_NUMERIC;
        P->cov_kind[j] = COV_UNDECIDED;
    }
    return POPK_OK;
}

static uint64_t hash_text(const char *s, size_t n)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * UINT64_C(1099511628211);
    return h;
}

/* Level index of text [s,s+n), adding it when new; -1 when out of memory. */
static int level_of(level_table *t, const char *s, size_t n)
{
    if ((size_t)t->n * 2 >= t->nslot) {
        size_t nslot = t->nslot ? t->nslot * 2 : 16;
        int *slot = calloc(nslot, sizeof *slot);
        if (!slot)
            return -1;
        for (int i = 0; i < t->n; i++) {
            size_t h = (size_t)hash_text(t->text[i], t->len[i]) & (nslot - 1);
            while (slot[h])
                h = (h + 1) & (nslot - 1);
            slot[h] = i + 1;
        }
        free(t->slot);
        t->slot = slot;
        t->nslot = nslot;
    }
    size_t h = (size_t)hash_text(s, n) & (t->nslot - 1);
    while (t->slot[h]) {
        int i = t->slot[h] - 1;
        if (t->len[i] == n && !memcmp(t->text[i], s, n))
            return i;
        h = (h + 1) & (t->nslot - 1);
    }
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 8;
        const char **text = realloc(t->text, (size_t)cap * sizeof *text);
        if (!text)
            return -1;
        t->text = text;
        size_t *len = realloc(t->len, (size_t)cap * sizeof *len);
        if (!len)
            return -1;
        t->len = len;
        t->cap = cap;
    }
    t->text[t->n] = s;
    t->len[t->n] = n;
    t->slot[h] = t->n + 1;
    return t->n++;
}

/* Copy level texts out of the file buffer: pointer array and texts in one allocation. */
static int finish_levels(popk_covariate *cov, const level_table *t)
{
    size_t bytes = (size_t)t->n * sizeof(char *);
    for (int i = 0; i < t->n; i++)
        bytes += t->len[i] + 1;
    char **levels = malloc(bytes ? bytes : 1);
    if (!levels)
        return -1;
    char *text = (char *)(levels + t->n);
    for (int i = 0; i < t->n; i++) {
        levels[i] = text;
        memcpy(text, t->text[i], t->len[i]);
        text[t->len[i]] = '\0';
        text += t->len[i] + 1;
    }
    cov->levels = levels;
    cov->nlevels = t->n;
    return 0;
}

static int is_integer_in(double v, double lo, double hi)
{
    return v == floor(v) && v >= lo && v <= hi;
}

/* One data record: convert fields, derive EVID/MDV, check the NONMEM rules. */
static popk_status parse_record(parser *P, int line, const char *ls, const char *le)
{
    popk_data *d = P->d;
    field *f = P->fields;
    size_t n = split(P, ls, le, f, P->ncol);
    if (n > P->ncol)
        return fail(P, POPK_ERR_DATA, line, ls, f[P->ncol].s,
                    "record has more fields than the header's %zu", P->ncol);
    if (n < P->ncol)
        return fail(P, POPK_ERR_DATA, line, ls, le, "record has %zu field%s, the header has %zu", n,
                    n == 1 ? "" : "s", P->ncol);
    if (d->nrec >= MAX_RECORDS)
        return fail(P, POPK_ERR_LIMIT, line, ls, ls, "too many records");
    size_t r = d->nrec;
    double val[POPK_ITEM_N] = {0};
    int missing[POPK_ITEM_N] = {0};
    const char *at[POPK_ITEM_N];
    for (int i = 0; i < POPK_ITEM_N; i++)
        at[i] = ls;
    for (size_t c = 0; c < n; c++) {
        const field *fc = &f[c];
        double v = 0;
        num_kind k = NUM_MISSING;
        int item = P->col_item[c];
        int j = P->col_cov[c];
        if (fc->s < fc->e && (*fc->s == '"' || *fc->s == '\''))
            return fail(P, POPK_ERR_DATA, line, ls, fc->s,
                        "quotes are not supported: write values without quotes");
        if (item < 0 && P->cov_kind[j] == POPK_COV_CATEGORICAL) {
            if (fc->s == fc->e || (fc->e - fc->s == 1 && *fc->s == '.')) {
                d->cov[j].values[r] = NAN;
                continue;
            }
            if (is_nonfinite_word(fc->s, fc->e))
                k = NUM_NONFINITE;
            else {
                int lev = level_of(&P->levels[j], fc->s, (size_t)(fc->e - fc->s));
                if (lev < 0)
                    return popk_error_set(P->err, POPK_ERR_NOMEM, P->name, line, 1,
                                          "out of memory");
                d->cov[j].values[r] = lev;
                continue;
            }
        } else {
            k = parse_number(fc->s, fc->e, &v);
        }
        const char *colname = item >= 0 ? item_names[item] : d->cov[j].name;
        if (k == NUM_NONFINITE)
            return fail(P, POPK_ERR_DATA, line, ls, fc->s,
                        "'%.*s' in column %s: NaN, infinity and NA are not values (write '.' "
                        "for a missing value)",
                        shown_len(fc), fc->s, colname);
        if (k == NUM_RANGE)
            return fail(P, POPK_ERR_DATA, line, ls, fc->s,
                        "number %.*s in column %s is out of range", shown_len(fc), fc->s, colname);
        if (item >= 0) {
            if (k == NUM_TEXT)
                return fail(P, POPK_ERR_DATA, line, ls, fc->s,
                            "non-numeric value '%.*s' in column %s", shown_len(fc), fc->s, colname);
            val[item] = k == NUM_OK ? v : 0.0;
            missing[item] = k == NUM_MISSING;
            at[item] = fc->s;
            continue;
        }
        if (P->cov_kind[j] == COV_UNDECIDED && k != NUM_MISSING) {
            P->cov_kind[j] = k == NUM_TEXT ? POPK_COV_CATEGORICAL : POPK_COV_NUMERIC;
            d->cov[j].kind = (popk_cov_kind)P->cov_kind[j];
            if (k == NUM_TEXT) {
                int lev = level_of(&P->levels[j], fc->s, (size_t)(fc->e - fc->s));
                if (lev < 0)
                    return popk_error_set(P->err, POPK_ERR_NOMEM, P->name, line, 1,
                                          "out of memory");
                d->cov[j].values[r] = lev;
                continue;
            }
        }
        if (k == NUM_TEXT)
            return fail(P, POPK_ERR_DATA, line, ls, fc->s,
                        "non-numeric value '%.*s' in numeric covariate %s (its first value was a "
                        "number)",
                        shown_len(fc), fc->s, colname);
        d->cov[j].values[r] = k == NUM_OK ? v : NAN;
    }

    popk_record *rec = &d->rec[r];
    memset(rec, 0, sizeof *rec);
    rec->line = line;
    rec->time = val[POPK_ITEM_TIME];
    rec->amt = val[POPK_ITEM_AMT];
    rec->rate = val[POPK_ITEM_RATE];
    rec->ii = val[POPK_ITEM_II];
    double id = val[POPK_ITEM_ID];

    static const struct {
        int item;
        double lo, hi;
        const char *range;
    } ints[] = {
        {POPK_ITEM_EVID, 0, 4, "0, 1, 2, 3 or 4"},   {POPK_ITEM_MDV, 0, 1, "0 or 1"},
        {POPK_ITEM_SS, 0, 2, "0, 1 or 2"},           {POPK_ITEM_CMT, -1e6, 1e6, "an integer"},
        {POPK_ITEM_ADDL, 0, 1e9, "an integer >= 0"}, {POPK_ITEM_DVID, -1e6, 1e6, "an integer"},
    };
    int iv[POPK_ITEM_N] = {0};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int it = ints[i].item;
        double v = val[it];
        if (!is_integer_in(v, ints[i].lo, ints[i].hi))
            return fail(P, POPK_ERR_DATA, line, ls, at[it], "%s%s %.15g: must be %s",
                        it == POPK_ITEM_EVID ? "unknown " : "", item_names[it], v, ints[i].range);
        iv[it] = (int)v;
    }
    if (rec->amt < 0)
        return fail(P, POPK_ERR_DATA, line, ls, at[POPK_ITEM_AMT], "AMT %.15g is negative",
                    rec->amt);
    if (rec->ii < 0)
        return fail(P, POPK_ERR_DATA, line, ls, at[POPK_ITEM_II], "II %.15g is negative", rec->ii);
    rec->cmt = iv[POPK_ITEM_CMT];
    rec->ss = iv[POPK_ITEM_SS];
    rec->addl = iv[POPK_ITEM_ADDL];
    rec->dvid = iv[POPK_ITEM_DVID];

    int dv_missing = missing[POPK_ITEM_DV] && d->has_col[POPK_ITEM_DV];
    int dose_like = rec->amt > 0 || rec->rate != 0 || rec->ss != 0;
    int mdv = d->has_col[POPK_ITEM_MDV] ? iv[POPK_ITEM_MDV] : (dose_like || dv_missing);
    rec->evid = d->has_col[POPK_ITEM_EVID] ? iv[POPK_ITEM_EVID] : dose_like ? 1 : mdv ? 2 : 0;
    rec->mdv = d->has_col[POPK_ITEM_MDV] ? iv[POPK_ITEM_MDV] : (rec->evid != 0 || dv_missing);
    rec->dv = val[POPK_ITEM_DV];
    int dose = rec->evid == 1 || rec->evid == 4;
    if (rec->evid != 0 && rec->mdv == 0)
        return fail(P, POPK_ERR_DATA, line, ls, at[POPK_ITEM_MDV],
                    "MDV 0 on a record that is not an observation (EVID %d): must be 1",
                    rec->evid);
    if (dv_missing && rec->evid == 0 && rec->mdv == 0)
        return fail(P, POPK_ERR_DATA, line, ls, at[POPK_ITEM_DV],
                    "DV is missing on an observation record (EVID 0, MDV 0): set MDV to 1 "
                    "to skip it");
    /* On dose records '.' is NONMEM's 0; elsewhere keep the fact that no value was given. */
    if (dv_missing && !dose)
        rec->dv = NAN;

    /* NONMEM: on EVID 0, 2 and 3 the dose items AMT, RATE, II, ADDL and SS must be 0. */
    static const struct {
        int item;
        const char *name;
    } dose_items[] = {{POPK_ITEM_AMT, "AMT"},
                      {POPK_ITEM_RATE, "RATE"},
                      {POPK_ITEM_II, "II"},
                      {POPK_ITEM_ADDL, "ADDL"},
                      {POPK_ITEM_SS, "SS"}};
    for (size_t i = 0; !dose && i < sizeof dose_items / sizeof dose_items[0]; i++) {
        int it = dose_items[i].item;
        if (val[it] != 0)
            return fail(P, POPK_ERR_DATA, line, ls, at[it],
                        "%s %.15g on a record that is not a dose (EVID %d)", dose_items[i].name,
                        val[it], rec->evid);
    }
    if (dose) {
        const char *ra = at[POPK_ITEM_RATE];
        if (rec->rate < 0 && rec->rate != -1 && rec->rate != -2)
            return fail(P, POPK_ERR_DATA, line, ls, ra,
                        "RATE %.15g: must be >= 0, or -1 (modelled rate) or -2 (modelled duration)",
                        rec->rate);
        if (rec->rate < 0 && rec->amt == 0)
            return fail(P, POPK_ERR_DATA, line, ls, ra, "RATE %.15g needs AMT > 0", rec->rate);
        if (rec->amt == 0 && rec->rate == 0 && rec->ss == 0)
            return fail(P, POPK_ERR_DATA, line, ls, at[POPK_ITEM_AMT],
                        "dose record (EVID %d) without a dose: AMT, RATE and SS are all 0",
                        rec->evid);
        /* AMT 0 with SS: a constant infusion at RATE (SS 1), or with RATE 0 the steady state
         * of endogenous input; neither repeats, so II must be 0. */
        int const_infusion = rec->rate > 0 && rec->amt == 0;
        if (const_infusion && rec->ss != 1)
            return fail(P, POPK_ERR_DATA, line, ls, ra,
                        "RATE > 0 with AMT 0 is only allowed for a steady-state constant "
                        "infusion (SS 1)");
        if (rec->amt == 0 && rec->ii != 0)
            return fail(P, POPK_ERR_DATA, line, ls, at[POPK_ITEM_II],
                        "%s (SS %d, AMT 0) needs II 0",
                        const_infusion ? "a steady-state constant infusion"
                                       : "a steady state of endogenous input",
                        rec->ss);
        if (rec->ss != 0 && rec->amt > 0 && rec->ii <= 0)
            return fail(P, POPK_ERR_DATA, line, ls, at[POPK_ITEM_SS], "SS %d needs II > 0",
                        rec->ss);
        if (rec->addl > 0 && rec->ii <= 0)
            return fail(P, POPK_ERR_DATA, line, ls, at[POPK_ITEM_ADDL], "ADDL %d needs II > 0",
                        rec->addl);
    }

    popk_subject *sub = d->nsub ? &d->sub[d->nsub - 1] : NULL;
    if (sub && sub->id == id) {
        const popk_record *prev = &d->rec[r - 1];
        if (rec->time < prev->time && rec->evid != 3 && rec->evid != 4)
            return fail(P, POPK_ERR_DATA, line, ls, at[POPK_ITEM_TIME],
                        "TIME %.15g is before the previous record's %.15g (line %d) in subject "
                        "ID %.15g: time may decrease only at an EVID 3 or 4 reset",
                        rec->time, prev->time, prev->line, id);
    } else {
        if (d->nsub == P->rec_cap)
            return popk_error_set(P->err, POPK_ERR_NOMEM, P->name, line, 1, "out of memory");
        sub = &d->sub[d->nsub++];
        sub->id = id;
        sub->first = r;
        sub->n = 0;
        sub->nobs = 0;
    }
    sub->n++;
    if (rec->evid == 0 && rec->mdv == 0)
        sub->nobs++;
    d->nrec++;
    return POPK_OK;
}

static void free_parser(parser *P)
{
    free(P->col_item);
    free(P->col_cov);
    free(P->cov_kind);
    if (P->levels)
        for (size_t j = 0; j < P->d->ncov; j++) {
            free(P->levels[j].text);
            free(P->levels[j].len);
            free(P->levels[j].slot);
        }
    free(P->levels);
    free(P->fields);
}

/* Parse a NUL-terminated buffer (buf[len] == 0). */
static popk_data *parse_terminated(const char *name, const char *buf, size_t len, popk_error *err)
{
    popk_error_clear(err);
    parser P;
    memset(&P, 0, sizeof P);
    P.name = name;
    P.buf = buf;
    P.end = buf + len;
    P.err = err;
    popk_status st = POPK_OK;
    popk_data *d = calloc(1, sizeof *d);
    P.d = d;
    P.fields = malloc((MAX_COLUMNS + 1) * sizeof *P.fields);
    size_t namelen = strlen(name);
    if (d)
        d->path = malloc(namelen + 1);
    if (!d || !P.fields || !d->path) {
        st = popk_error_set(err, POPK_ERR_NOMEM, name, 0, 0, "out of memory");
        goto out;
    }
    memcpy(d->path, name, namelen + 1);

    const char *p = buf;
    if (len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3))
        p += 3;
    if ((st = check_bytes(&P, p)) != POPK_OK)
        goto out;
    size_t nlines = 1;
    for (const char *q = p; (q = memchr(q, '\n', (size_t)(P.end - q))) != NULL; q++)
        nlines++;
    P.rec_cap = nlines;
    d->rec = malloc(nlines * sizeof *d->rec);
    d->sub = malloc(nlines * sizeof *d->sub);
    if (!d->rec || !d->sub) {
        st = popk_error_set(err, POPK_ERR_NOMEM, name, 0, 0, "out of memory");
        goto out;
    }

    int line = 0, header_line = 0;
    while (p < P.end) {
        line++;
        if (line == INT32_MAX) {
            st = popk_error_set(err, POPK_ERR_LIMIT, name, line, 1, "too many lines");
            goto out;
        }
        const char *nl = memchr(p, '\n', (size_t)(P.end - p));
        const char *le = nl ? nl : P.end;
        const char *next = nl ? nl + 1 : P.end;
        if (le > p && le[-1] == '\r')
            le--;
        if ((size_t)(le - p) > MAX_LINE_BYTES) {
            st = popk_error_set(err, POPK_ERR_LIMIT, name, line, 1, "line longer than %u bytes",
                                MAX_LINE_BYTES);
            goto out;
        }
        const char *q = p;
        while (q < le && (*q == ' ' || *q == '\t'))
            q++;
        if (q < le && *q != '#' && *q != '@') {
            if (!header_line)
                P.comma = memchr(p, ',', (size_t)(le - p)) != NULL;
            st = header_line ? parse_record(&P, line, p, le) : parse_header(&P, line, p, le);
            if (st != POPK_OK)
                goto out;
            if (!header_line)
                header_line = line;
        }
        p = next;
    }
    if (!header_line) {
        st = popk_error_set(err, POPK_ERR_DATA, name, 1, 1,
                            "empty file: no header row and no records");
        goto out;
    }
    if (d->nrec == 0) {
        st = popk_error_set(err, POPK_ERR_DATA, name, header_line, 1,
                            "no data records after the header");
        goto out;
    }
    for (size_t j = 0; j < d->ncov; j++)
        if (d->cov[j].kind == POPK_COV_CATEGORICAL && finish_levels(&d->cov[j], &P.levels[j])) {
            st = popk_error_set(err, POPK_ERR_NOMEM, name, 0, 0, "out of memory");
            goto out;
        }
    /* Give back the slack of the line-count bound (comments, blank lines, subjects). */
    popk_record *rec = realloc(d->rec, d->nrec * sizeof *rec);
    if (rec)
        d->rec = rec;
    popk_subject *sub = realloc(d->sub, d->nsub * sizeof *sub);
    if (sub)
        d->sub = sub;
out:
    free_parser(&P);
    if (st != POPK_OK) {
        popk_data_free(d);
        return NULL;
    }
    return d;
}

popk_data *popk_data_parse(const char *name, const char *buf, size_t len, popk_error *err)
{
    if (!name)
        name = "(memory)";
    if (!buf && len) {
        popk_error_set(err, POPK_ERR_ARG, name, 0, 0, "no buffer");
        return NULL;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        popk_error_set(err, POPK_ERR_NOMEM, name, 0, 0, "out of memory");
        return NULL;
    }
    if (len)
        memcpy(copy, buf, len);
    copy[len] = '\0';
    popk_data *d = parse_terminated(name, copy, len, err);
    free(copy);
    return d;
}

popk_data *popk_data_read(const char *path, popk_error *err)
{
    if (!path) {
        popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "no dataset path");
        return NULL;
    }
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        popk_error_set(err, POPK_ERR_IO, path, 0, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat stb;
    size_t cap = 1 << 16;
    if (fstat(fileno(fp), &stb) == 0) {
        if (S_ISDIR(stb.st_mode)) {
            fclose(fp);
            popk_error_set(err, POPK_ERR_IO, path, 0, 0, "is a directory, not a dataset file");
            return NULL;
        }
        if (S_ISREG(stb.st_mode) && (uintmax_t)stb.st_size < MAX_FILE_BYTES)
            cap = (size_t)stb.st_size + 1; /* + 1 so that a full read proves end of file */
    }
    char *buf = malloc(cap + 1); /* + 1 for the terminating NUL the parser relies on */
    size_t len = 0;
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len, fp);
        /* A NUL byte already decides the outcome: stop, so /dev/zero and the like end. */
        int has_nul = memchr(buf + len, '\0', got) != NULL;
        len += got;
        if (len < cap || has_nul)
            break;
        if (len >= MAX_FILE_BYTES) {
            free(buf);
            fclose(fp);
            popk_error_set(err, POPK_ERR_LIMIT, path, 0, 0, "file larger than %llu bytes",
                           (unsigned long long)MAX_FILE_BYTES);
            return NULL;
        }
        char *bigger = cap < SIZE_MAX / 4 ? realloc(buf, cap * 2 + 1) : NULL;
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int read_error = ferror(fp);
    int saved_errno = errno;
    fclose(fp);
    if (!buf) {
        popk_error_set(err, POPK_ERR_NOMEM, path, 0, 0, "out of memory reading the file");
        return NULL;
    }
    if (read_error) {
        free(buf);
        popk_error_set(err, POPK_ERR_IO, path, 0, 0, "read error: %s", strerror(saved_errno));
        return NULL;
    }
    buf[len] = '\0';
    popk_data *d = parse_terminated(path, buf, len, err);
    free(buf);
    return d;
}

void popk_data_free(popk_data *d)
{
    if (!d)
        return;
    for (size_t j = 0; d->cov && j < d->ncov; j++) {
        free(d->cov[j].name);
        free(d->cov[j].values);
        free(d->cov[j].levels);
    }
    free(d->cov);
    free(d->rec);
    free(d->sub);
    free(d->path);
    free(d);
}

int popk_data_find_cov(const popk_data *d, const char *name)
{
    if (!d || !name)
        return -1;
    for (size_t j = 0; j < d->ncov; j++)
        if (!strcasecmp(d->cov[j].name, name))
            return (int)j;
    return -1;
}

/* Copy of the categorical level table: one block holding the pointers and the texts. */
static char **copy_levels(char **levels, int n)
{
    size_t size = sizeof(char *) * (size_t)n;
    for (int i = 0; i < n; i++)
        size += strlen(levels[i]) + 1;
    char **out = malloc(size ? size : 1);
    if (!out)
        return NULL;
    char *text = (char *)(out + n);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(levels[i]) + 1;
        memcpy(text, levels[i], len);
        out[i] = text;
        text += len;
    }
    return out;
}

popk_data *popk_data_subset(const popk_data *d, const unsigned char *keep, popk_error *err)
{
    popk_data *s = calloc(1, sizeof *s);
    size_t n = 0;
    for (size_t r = 0; r < d->nrec; r++)
        n += keep[r] != 0;
    if (!s)
        goto nomem;
    s->path = strdup(d->path ? d->path : "");
    s->rec = malloc(sizeof *s->rec * (n ? n : 1));
    s->sub = malloc(sizeof *s->sub * (d->nsub ? d->nsub : 1));
    s->cov = calloc(d->ncov ? d->ncov : 1, sizeof *s->cov);
    if (!s->path || !s->rec || !s->sub || !s->cov)
        goto nomem;
    memcpy(s->has_col, d->has_col, sizeof s->has_col);
    s->ncov = d->ncov;
    for (size_t j = 0; j < d->ncov; j++) {
        popk_covariate *c = &s->cov[j];
        const popk_covariate *o = &d->cov[j];
        c->kind = o->kind;
        c->nlevels = o->nlevels;
        c->name = strdup(o->name);
        c->values = malloc(sizeof(double) * (n ? n : 1));
        if (o->nlevels > 0)
            c->levels = copy_levels(o->levels, o->nlevels);
        if (!c->name || !c->values || (o->nlevels > 0 && !c->levels))
            goto nomem;
    }
    for (size_t t = 0; t < d->nsub; t++) {
        const popk_subject *o = &d->sub[t];
        popk_subject *ns = &s->sub[s->nsub];
        ns->id = o->id;
        ns->first = s->nrec;
        ns->n = ns->nobs = 0;
        for (size_t r = o->first; r < o->first + o->n; r++) {
            if (!keep[r])
                continue;
            s->rec[s->nrec] = d->rec[r];
            for (size_t j = 0; j < d->ncov; j++)
                s->cov[j].values[s->nrec] = d->cov[j].values[r];
            ns->nobs += d->rec[r].evid == 0 && d->rec[r].mdv == 0;
            ns->n++;
            s->nrec++;
        }
        if (ns->n > 0)
            s->nsub++;
    }
    return s;
nomem:
    popk_data_free(s);
    popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    return NULL;
}

/* Parse "NAME=VALUE" (also "NAME==VALUE", "NAME.EQ.VALUE") into a column and a value. */
static int parse_condition(const popk_data *d, const char *cond, int *col, double *value)
{
    char name[128];
    const char *eq = strstr(cond, ".EQ.");
    size_t len;
    const char *rest;
    if (eq) {
        len = (size_t)(eq - cond);
        rest = eq + 4;
    } else if ((eq = strchr(cond, '='))) {
        len = (size_t)(eq - cond);
        rest = eq + 1 + (eq[1] == '=');
    } else {
        return -1;
    }
    if (len == 0 || len >= sizeof name)
        return -1;
    memcpy(name, cond, len);
    name[len] = '\0';
    char *end;
    *value = strtod(rest, &end);
    if (end == rest || *end != '\0')
        return -1;
    static const char *const items[] = {"ID", "TIME", "DV", "AMT", "EVID", "MDV", "CMT",
                                        "RATE", "II", "ADDL", "SS", "DVID"};
    for (int i = 0; i < 12; i++)
        if (!strcasecmp(name, items[i])) {
            *col = -1 - i;
            return 0;
        }
    *col = popk_data_find_cov(d, name);
    return *col >= 0 ? 0 : -2;
}

static double item_value(const popk_data *d, size_t r, int col)
{
    const popk_record *rec = &d->rec[r];
    switch (-1 - col) {
    case 1: return rec->time;
    case 2: return rec->dv;
    case 3: return rec->amt;
    case 4: return rec->evid;
    case 5: return rec->mdv;
    case 6: return rec->cmt;
    case 7: return rec->rate;
    case 8: return rec->ii;
    case 9: return rec->addl;
    case 10: return rec->ss;
    case 11: return rec->dvid;
    default: break;
    }
    for (size_t t = 0; t < d->nsub; t++)
        if (r >= d->sub[t].first && r < d->sub[t].first + d->sub[t].n)
            return d->sub[t].id;
    return NAN;
}

popk_data *popk_data_filter(const popk_data *d, const char *cond, int accept, popk_error *err)
{
    int col;
    double value;
    int rc = parse_condition(d, cond, &col, &value);
    if (rc == -2) {
        popk_error_set(err, POPK_ERR_ARG, d->path, 0, 0, "filter '%s': no such column", cond);
        return NULL;
    }
    if (rc != 0) {
        popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                       "filter '%s': expected COLUMN=VALUE (e.g. SD=0)", cond);
        return NULL;
    }
    unsigned char *keep = malloc(d->nrec ? d->nrec : 1);
    if (!keep) {
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    for (size_t r = 0; r < d->nrec; r++) {
        double v = col >= 0 ? d->cov[col].values[r] : item_value(d, r, col);
        int match = v == value;
        keep[r] = (unsigned char)(accept ? match : !match);
    }
    popk_data *s = popk_data_subset(d, keep, err);
    free(keep);
    return s;
}
