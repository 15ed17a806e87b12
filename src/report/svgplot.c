/* report/svgplot.c — SVG rendering of x-y plots (see svgplot.h). */
#include "report/svgplot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { SER_POINTS, SER_LINE, SER_BAND, SER_RECTS, SER_HLINE, SER_IDENTITY } series_kind;

typedef struct {
    series_kind kind;
    size_t n;
    double *a, *b, *c, *d; /* points/line: x y; band: x lo hi; rects: x0 x1 y0 y1 */
    char color[40];
    double width, size, opacity;
    int dashed;
    popk_marker marker;
    char *label;
} series;

struct popk_plot {
    int width, height;
    char *title, *xlabel, *ylabel;
    int xlog, ylog, equal, legend_corner;
    double lim[4];
    int nser, cap;
    series *ser;
    int nxt;
    double *xt_at;
    char **xt_label;
};

popk_plot *popk_plot_new(int width, int height)
{
    popk_plot *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->width = width;
    p->height = height;
    for (int k = 0; k < 4; k++)
        p->lim[k] = NAN;
    return p;
}

void popk_plot_free(popk_plot *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nser; i++) {
        free(p->ser[i].a);
        free(p->ser[i].label);
    }
    for (int i = 0; i < p->nxt; i++)
        free(p->xt_label[i]);
    free(p->xt_label);
    free(p->xt_at);
    free(p->ser);
    free(p->title);
    free(p->xlabel);
    free(p->ylabel);
    free(p);
}

static int dup_into(char **dst, const char *s)
{
    free(*dst);
    *dst = NULL;
    if (!s)
        return 0;
    *dst = strdup(s);
    return *dst ? 0 : -1;
}

int popk_plot_labels(popk_plot *p, const char *title, const char *xlabel, const char *ylabel)
{
    return dup_into(&p->title, title) | dup_into(&p->xlabel, xlabel) |
           dup_into(&p->ylabel, ylabel);
}

void popk_plot_log(popk_plot *p, int xlog, int ylog)
{
    p->xlog = xlog;
    p->ylog = ylog;
}

void popk_plot_limits(popk_plot *p, double xlo, double xhi, double ylo, double yhi)
{
    p->lim[0] = xlo;
    p->lim[1] = xhi;
    p->lim[2] = ylo;
    p->lim[3] = yhi;
}

void popk_plot_legend_corner(popk_plot *p, int corner)
{
    p->legend_corner = corner;
}

void popk_plot_equal(popk_plot *p)
{
    p->equal = 1;
}

int popk_plot_xticks(popk_plot *p, int n, const double *at, const char *const *labels)
{
    p->xt_at = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    p->xt_label = calloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    if (!p->xt_at || !p->xt_label)
        return -1;
    for (int i = 0; i < n; i++) {
        p->xt_at[i] = at[i];
        if (!(p->xt_label[i] = strdup(labels[i])))
            return -1;
        p->nxt = i + 1;
    }
    return 0;
}

static series *add_series(popk_plot *p, series_kind kind, size_t n, int ncol,
                          const popk_plot_style *st)
{
    if (p->nser == p->cap) {
        int cap = p->cap ? 2 * p->cap : 8;
        series *s = realloc(p->ser, sizeof *s * (size_t)cap);
        if (!s)
            return NULL;
        p->ser = s;
        p->cap = cap;
    }
    series *s = &p->ser[p->nser];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->n = n;
    if (!(s->a = malloc(sizeof(double) * (n * (size_t)ncol + 1))))
        return NULL;
    s->b = s->a + n;
    s->c = s->b + n;
    s->d = s->c + n;
    popk_plot_style def = {0};
    if (!st)
        st = &def;
    snprintf(s->color, sizeof s->color, "%s", st->color ? st->color : "black");
    s->width = st->width > 0 ? st->width : 1.5;
    s->size = st->size > 0 ? st->size : 2.5;
    s->opacity = st->opacity > 0 ? st->opacity : kind == SER_BAND || kind == SER_RECTS ? 0.25 : 1;
    s->dashed = st->dashed;
    s->marker = kind == SER_POINTS && st->marker == POPK_MARK_NONE ? POPK_MARK_DOT : st->marker;
    if (st->label && !(s->label = strdup(st->label))) {
        free(s->a);
        return NULL;
    }
    p->nser++;
    return s;
}

int popk_plot_points(popk_plot *p, size_t n, const double *x, const double *y,
                     const popk_plot_style *style)
{
    series *s = add_series(p, SER_POINTS, n, 2, style);
    if (!s)
        return -1;
    memcpy(s->a, x, sizeof(double) * n);
    memcpy(s->b, y, sizeof(double) * n);
    return 0;
}

int popk_plot_line(popk_plot *p, size_t n, const double *x, const double *y,
                   const popk_plot_style *style)
{
    series *s = add_series(p, SER_LINE, n, 2, style);
    if (!s)
        return -1;
    memcpy(s->a, x, sizeof(double) * n);
    memcpy(s->b, y, sizeof(double) * n);
    return 0;
}

int popk_plot_band(popk_plot *p, size_t n, const double *x, const double *ylo,
                   const double *yhi, const popk_plot_style *style)
{
    series *s = add_series(p, SER_BAND, n, 3, style);
    if (!s)
        return -1;
    memcpy(s->a, x, sizeof(double) * n);
    memcpy(s->b, ylo, sizeof(double) * n);
    memcpy(s->c, yhi, sizeof(double) * n);
    return 0;
}

int popk_plot_rects(popk_plot *p, size_t n, const double *x0, const double *x1,
                    const double *y0, const double *y1, const popk_plot_style *style)
{
    series *s = add_series(p, SER_RECTS, n, 4, style);
    if (!s)
        return -1;
    memcpy(s->a, x0, sizeof(double) * n);
    memcpy(s->b, x1, sizeof(double) * n);
    memcpy(s->c, y0, sizeof(double) * n);
    memcpy(s->d, y1, sizeof(double) * n);
    return 0;
}

int popk_plot_hline(popk_plot *p, double y, const popk_plot_style *style)
{
    series *s = add_series(p, SER_HLINE, 1, 1, style);
    if (!s)
        return -1;
    s->a[0] = y;
    return 0;
}

int popk_plot_identity(popk_plot *p, const popk_plot_style *style)
{
    return add_series(p, SER_IDENTITY, 0, 1, style) ? 0 : -1;
}

/* ---- axes ---------------------------------------------------------------------------- */

static double nice_step(double range, int target)
{
    double raw = range / target, mag = pow(10.0, floor(log10(raw))), r = raw / mag;
    double m = r <= 1.0 ? 1.0 : r <= 2.0 ? 2.0 : r <= 2.5 ? 2.5 : r <= 5.0 ? 5.0 : 10.0;
    return m * mag;
}

int popk_plot_ticks(double lo, double hi, int log_axis, double *at, int *labelled, int max)
{
    int n = 0;
    if (!(hi > lo) || !isfinite(lo) || !isfinite(hi))
        return 0;
    if (!log_axis) {
        double step = nice_step(hi - lo, 5);
        for (double k = ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * step && n < max; k++) {
            double v = k * step;
            at[n] = fabs(v) < 1e-12 * step ? 0.0 : v;
            if (labelled)
                labelled[n] = 1;
            n++;
        }
        return n;
    }
    /* lo, hi are log10 values. Decades always; 2 and 5 labelled when the range is short;
     * the other multiples as unlabelled minor ticks when it is not too long. */
    double decades = hi - lo;
    for (double e = floor(lo); e <= ceil(hi) && n < max; e++)
        for (int mlt = 1; mlt <= 9 && n < max; mlt++) {
            double lv = e + log10((double)mlt);
            if (lv < lo - 1e-9 || lv > hi + 1e-9)
                continue;
            int major = mlt == 1 || (decades < 2.5 && (mlt == 2 || mlt == 5));
            int show = major || decades <= 6;
            if (!show)
                continue;
            at[n] = lv;
            if (labelled)
                labelled[n] = major;
            n++;
        }
    return n;
}

void popk_plot_tick_label(double v, double step, int log_axis, char *buf, size_t size)
{
    if (log_axis) {
        double x = pow(10.0, v);
        snprintf(buf, size, "%g", x);
        return;
    }
    double a = fabs(v);
    if (a != 0.0 && (a >= 1e6 || a < 1e-4)) {
        snprintf(buf, size, "%.3g", v);
        return;
    }
    int decimals = step >= 1.0 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(step / pow(10.0, floor(log10(step))) - 2.5) < 1e-9 && step < 10.0)
        decimals++;
    if (decimals < 0)
        decimals = 0;
    snprintf(buf, size, "%.*f", decimals, v);
}

/* ---- rendering ----------------------------------------------------------------------- */

typedef struct {
    double x0, y0, w, h;        /* plot area in px */
    double xlo, xhi, ylo, yhi;  /* axis ranges (log10 on log axes) */
    int xlog, ylog;
} frame;

static int tx(const frame *fr, double x, double *px)
{
    if (fr->xlog) {
        if (!(x > 0))
            return 0;
        x = log10(x);
    }
    if (!isfinite(x))
        return 0;
    *px = fr->x0 + (x - fr->xlo) / (fr->xhi - fr->xlo) * fr->w;
    return 1;
}

static int ty(const frame *fr, double y, double *py)
{
    if (fr->ylog) {
        if (!(y > 0))
            return 0;
        y = log10(y);
    }
    if (!isfinite(y))
        return 0;
    *py = fr->y0 + fr->h - (y - fr->ylo) / (fr->yhi - fr->ylo) * fr->h;
    return 1;
}

static void range_add(double v, int log_axis, double *lo, double *hi)
{
    if (log_axis) {
        if (!(v > 0))
            return;
        v = log10(v);
    }
    if (!isfinite(v))
        return;
    if (v < *lo)
        *lo = v;
    if (v > *hi)
        *hi = v;
}

static void data_range(const popk_plot *p, int axis_y, double *lo, double *hi)
{
    int lg = axis_y ? p->ylog : p->xlog;
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int i = 0; i < p->nser; i++) {
        const series *s = &p->ser[i];
        for (size_t k = 0; k < s->n; k++) {
            switch (s->kind) {
            case SER_POINTS:
            case SER_LINE:
                range_add(axis_y ? s->b[k] : s->a[k], lg, lo, hi);
                break;
            case SER_BAND:
                if (axis_y) {
                    range_add(s->b[k], lg, lo, hi);
                    range_add(s->c[k], lg, lo, hi);
                } else {
                    range_add(s->a[k], lg, lo, hi);
                }
                break;
            case SER_RECTS:
                range_add(axis_y ? s->c[k] : s->a[k], lg, lo, hi);
                range_add(axis_y ? s->d[k] : s->b[k], lg, lo, hi);
                break;
            case SER_HLINE:
                if (axis_y)
                    range_add(s->a[k], lg, lo, hi);
                break;
            case SER_IDENTITY:
                break;
            }
        }
    }
    if (!axis_y)
        for (int i = 0; i < p->nxt; i++)
            range_add(p->xt_at[i], lg, lo, hi);
}

static void finish_range(double *lo, double *hi, double fixlo, double fixhi, int lg)
{
    if (!isfinite(*lo)) {
        *lo = lg ? 0.0 : 0.0;
        *hi = 1.0;
    }
    if (*hi - *lo < 1e-12 * (fabs(*lo) + fabs(*hi)) || *hi == *lo) {
        double pad = lg ? 0.5 : (*lo == 0 ? 1.0 : 0.1 * fabs(*lo));
        *lo -= pad;
        *hi += pad;
    } else {
        double pad = 0.04 * (*hi - *lo);
        *lo -= pad;
        *hi += pad;
    }
    if (!isnan(fixlo))
        *lo = lg ? log10(fixlo) : fixlo;
    if (!isnan(fixhi))
        *hi = lg ? log10(fixhi) : fixhi;
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

static const char *dash_attr(int dashed)
{
    return dashed == 1 ? " stroke-dasharray=\"6,4\"" : dashed == 2 ? " stroke-dasharray=\"2,3\"" : "";
}

static void draw_polyline(FILE *f, const frame *fr, const series *s)
{
    int open = 0;
    for (size_t k = 0; k < s->n; k++) {
        double px, py;
        if (!tx(fr, s->a[k], &px) || !ty(fr, s->b[k], &py)) {
            if (open)
                fputs("\"/>\n", f);
            open = 0;
            continue;
        }
        if (!open) {
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.2g\"%s%s points=\"",
                    s->color, s->width, dash_attr(s->dashed),
                    s->opacity < 1 ? " stroke-opacity=\"0.6\"" : "");
            open = 1;
        } else {
            fputc(' ', f);
        }
        fprintf(f, "%.1f,%.1f", px, py);
    }
    if (open)
        fputs("\"/>\n", f);
}

/* Lower edge of a band: on a log axis a non-positive value means "below the axis", so the
 * band runs to the bottom of the plot instead of stopping. */
static int band_lo(const frame *fr, double y, double *py)
{
    if (fr->ylog && y <= 0) {
        *py = fr->y0 + fr->h + 2;
        return 1;
    }
    return ty(fr, y, py);
}

static void draw_band(FILE *f, const frame *fr, const series *s)
{
    size_t k = 0;
    while (k < s->n) {
        double px = 0, pl = 0, ph = 0;
        size_t start = k;
        while (k < s->n && tx(fr, s->a[k], &px) && band_lo(fr, s->b[k], &pl) &&
               ty(fr, s->c[k], &ph))
            k++;
        if (k - start >= 2) {
            fprintf(f, "<path fill=\"%s\" fill-opacity=\"%.2g\" stroke=\"none\" d=\"", s->color,
                    s->opacity);
            for (size_t i = start; i < k; i++) {
                tx(fr, s->a[i], &px);
                ty(fr, s->c[i], &ph);
                fprintf(f, "%s%.1f,%.1f", i == start ? "M" : " L", px, ph);
            }
            for (size_t i = k; i-- > start;) {
                tx(fr, s->a[i], &px);
                band_lo(fr, s->b[i], &pl);
                fprintf(f, " L%.1f,%.1f", px, pl);
            }
            fputs(" Z\"/>\n", f);
        }
        k = k == start ? k + 1 : k;
    }
}

static void draw_series(FILE *f, const frame *fr, const series *s)
{
    double px, py, px2, py2;
    switch (s->kind) {
    case SER_POINTS:
        fprintf(f, "<g fill=\"%s\" fill-opacity=\"%.2g\" stroke=\"%s\">\n",
                s->marker == POPK_MARK_RING ? "none" : s->color, s->opacity,
                s->marker == POPK_MARK_RING ? s->color : "none");
        for (size_t k = 0; k < s->n; k++)
            if (tx(fr, s->a[k], &px) && ty(fr, s->b[k], &py))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.2g\"/>\n", px, py, s->size);
        fputs("</g>\n", f);
        break;
    case SER_LINE:
        draw_polyline(f, fr, s);
        break;
    case SER_BAND:
        draw_band(f, fr, s);
        break;
    case SER_RECTS:
        fprintf(f, "<g fill=\"%s\" fill-opacity=\"%.2g\" stroke=\"%s\" stroke-width=\"0.8\">\n",
                s->color, s->opacity, s->color);
        for (size_t k = 0; k < s->n; k++)
            if (tx(fr, s->a[k], &px) && tx(fr, s->b[k], &px2) && ty(fr, s->c[k], &py) &&
                ty(fr, s->d[k], &py2))
                fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>\n",
                        fmin(px, px2), fmin(py, py2), fabs(px2 - px), fabs(py2 - py));
        fputs("</g>\n", f);
        break;
    case SER_HLINE:
        if (ty(fr, s->a[0], &py))
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                       "stroke-width=\"%.2g\"%s/>\n",
                    fr->x0, fr->x0 + fr->w, py, py, s->color, s->width, dash_attr(s->dashed));
        break;
    case SER_IDENTITY: {
        /* y = x in data units: a straight line on both linear and log-log axes. */
        double lo = fmax(fr->xlo, fr->ylo), hi = fmin(fr->xhi, fr->yhi);
        if (fr->xlog != fr->ylog || !(hi > lo))
            break;
        double a = fr->xlog ? pow(10.0, lo) : lo, b = fr->xlog ? pow(10.0, hi) : hi;
        if (tx(fr, a, &px) && ty(fr, a, &py) && tx(fr, b, &px2) && ty(fr, b, &py2))
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                       "stroke-width=\"%.2g\"%s/>\n",
                    px, py, px2, py2, s->color, s->width, dash_attr(s->dashed));
        break;
    }
    }
}

static void draw_axes(FILE *f, const popk_plot *p, const frame *fr)
{
    double at[128];
    int lab[128];
    char buf[64];
    /* y axis */
    int n = popk_plot_ticks(fr->ylo, fr->yhi, fr->ylog, at, lab, 128);
    double step = n > 1 ? at[1] - at[0] : 1.0;
    for (int i = 0; i < n; i++) {
        double py = fr->y0 + fr->h - (at[i] - fr->ylo) / (fr->yhi - fr->ylo) * fr->h;
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n",
                fr->x0, fr->x0 + fr->w, py, py);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n",
                fr->x0 - (lab[i] ? 5 : 3), fr->x0, py, py);
        if (lab[i]) {
            popk_plot_tick_label(at[i], step, fr->ylog, buf, sizeof buf);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                    fr->x0 - 7, py + 3.5, buf);
        }
    }
    /* x axis */
    if (p->nxt > 0) {
        for (int i = 0; i < p->nxt; i++) {
            double px;
            if (!tx(fr, p->xt_at[i], &px))
                continue;
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n",
                    px, px, fr->y0 + fr->h, fr->y0 + fr->h + 5);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", px,
                    fr->y0 + fr->h + 17);
            xml_text(f, p->xt_label[i]);
            fputs("</text>\n", f);
        }
    } else {
        n = popk_plot_ticks(fr->xlo, fr->xhi, fr->xlog, at, lab, 128);
        step = n > 1 ? at[1] - at[0] : 1.0;
        for (int i = 0; i < n; i++) {
            double px = fr->x0 + (at[i] - fr->xlo) / (fr->xhi - fr->xlo) * fr->w;
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n",
                    px, px, fr->y0, fr->y0 + fr->h);
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n",
                    px, px, fr->y0 + fr->h, fr->y0 + fr->h + (lab[i] ? 5 : 3));
            if (lab[i]) {
                popk_plot_tick_label(at[i], step, fr->xlog, buf, sizeof buf);
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", px,
                        fr->y0 + fr->h + 17, buf);
            }
        }
    }
}

static void draw_legend(FILE *f, const popk_plot *p, const frame *fr)
{
    int n = 0;
    size_t longest = 0;
    for (int i = 0; i < p->nser; i++)
        if (p->ser[i].label) {
            n++;
            size_t len = strlen(p->ser[i].label);
            longest = len > longest ? len : longest;
        }
    if (!n)
        return;
    double w = 30 + 6.2 * (double)longest, h = 6 + 15.0 * n;
    int left = p->legend_corner >= 2, bottom = p->legend_corner % 2 == 1;
    double x = left ? fr->x0 + 6 : fr->x0 + fr->w - w - 6;
    double y = bottom ? fr->y0 + fr->h - h - 6 : fr->y0 + 6;
    fprintf(f, "<g class=\"legend\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
               "fill=\"white\" fill-opacity=\"0.85\" stroke=\"#bbb\"/>\n",
            x, y, w, h);
    int row = 0;
    for (int i = 0; i < p->nser; i++) {
        const series *s = &p->ser[i];
        if (!s->label)
            continue;
        double cy = y + 11 + 15.0 * row++;
        switch (s->kind) {
        case SER_POINTS:
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\" stroke=\"%s\"/>\n",
                    x + 13, cy, s->marker == POPK_MARK_RING ? "none" : s->color,
                    s->marker == POPK_MARK_RING ? s->color : "none");
            break;
        case SER_BAND:
        case SER_RECTS:
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"16\" height=\"9\" fill=\"%s\" "
                       "fill-opacity=\"%.2g\"/>\n",
                    x + 5, cy - 4.5, s->color, s->opacity);
            break;
        default:
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                       "stroke-width=\"%.2g\"%s/>\n",
                    x + 4, x + 22, cy, cy, s->color, s->width, dash_attr(s->dashed));
        }
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", x + 26, cy + 3.5);
        xml_text(f, s->label);
        fputs("</text>\n", f);
    }
    fputs("</g>\n", f);
}

int popk_plot_write(const popk_plot *p, FILE *f, const char *id)
{
    frame fr;
    double top = p->title ? 24 : 10, left = p->ylabel ? 62 : 48, bottom = p->xlabel ? 42 : 26;
    fr.x0 = left;
    fr.y0 = top;
    fr.w = p->width - left - 12;
    fr.h = p->height - top - bottom;
    fr.xlog = p->xlog;
    fr.ylog = p->ylog;
    data_range(p, 0, &fr.xlo, &fr.xhi);
    data_range(p, 1, &fr.ylo, &fr.yhi);
    if (p->equal && fr.xlog == fr.ylog) {
        double lo = fmin(fr.xlo, fr.ylo), hi = fmax(fr.xhi, fr.yhi);
        fr.xlo = fr.ylo = lo;
        fr.xhi = fr.yhi = hi;
    }
    finish_range(&fr.xlo, &fr.xhi, p->lim[0], p->lim[1], fr.xlog);
    finish_range(&fr.ylo, &fr.yhi, p->lim[2], p->lim[3], fr.ylog);

    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"%s\" class=\"plot\" width=\"%d\" "
               "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" font-family=\"Helvetica, Arial, "
               "sans-serif\" font-size=\"11\">\n",
            id, p->width, p->height, p->width, p->height);
    if (p->title) {
        fputs("<title>", f);
        xml_text(f, p->title);
        fputs("</title>\n", f);
    }
    fprintf(f, "<defs><clipPath id=\"%s-clip\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
               "height=\"%.1f\"/></clipPath></defs>\n",
            id, fr.x0, fr.y0, fr.w, fr.h);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", p->width,
            p->height);
    draw_axes(f, p, &fr);
    fprintf(f, "<g clip-path=\"url(#%s-clip)\">\n", id);
    for (int i = 0; i < p->nser; i++)
        draw_series(f, &fr, &p->ser[i]);
    fputs("</g>\n", f);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"#444\"/>\n",
            fr.x0, fr.y0, fr.w, fr.h);
    draw_legend(f, p, &fr);
    if (p->title) {
        fprintf(f, "<text x=\"%.1f\" y=\"16\" text-anchor=\"middle\" font-weight=\"bold\" "
                   "font-size=\"12\">",
                fr.x0 + fr.w / 2);
        xml_text(f, p->title);
        fputs("</text>\n", f);
    }
    if (p->xlabel) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", fr.x0 + fr.w / 2,
                (double)p->height - 8);
        xml_text(f, p->xlabel);
        fputs("</text>\n", f);
    }
    if (p->ylabel) {
        fprintf(f, "<text transform=\"translate(14,%.1f) rotate(-90)\" text-anchor=\"middle\">",
                fr.y0 + fr.h / 2);
        xml_text(f, p->ylabel);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
    return ferror(f) ? -1 : 0;
}
