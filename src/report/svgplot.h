/* report/svgplot.h — x-y plots rendered as standalone SVG elements: points, lines, shaded
 * bands, rectangles and reference lines on linear or logarithmic axes, with ticks, grid,
 * axis titles and a legend. Small on purpose: docs/diagnostics.md says why the report does
 * not use PLplot. A plot copies everything it is given; rendering never fails except on
 * output errors. */
#ifndef POPK_REPORT_SVGPLOT_H
#define POPK_REPORT_SVGPLOT_H

#include <stddef.h>
#include <stdio.h>

typedef struct popk_plot popk_plot;

typedef enum { POPK_MARK_NONE, POPK_MARK_DOT, POPK_MARK_RING } popk_marker;

typedef struct {
    const char *color;   /* any SVG colour ("#1f77b4", "black"); NULL: black */
    double width;        /* line width in px; 0: 1.5 */
    int dashed;          /* lines: 1 dashed, 2 dotted */
    popk_marker marker;  /* points */
    double size;         /* marker radius in px; 0: 2.5 */
    double opacity;      /* fill/stroke opacity; 0: 1 (bands: 0.25) */
    const char *label;   /* legend entry; NULL: none */
} popk_plot_style;

/* A plot of width x height px (NULL when out of memory). */
popk_plot *popk_plot_new(int width, int height);
void popk_plot_free(popk_plot *p);

/* Titles (NULL leaves one out). Returns 0, or -1 when out of memory. */
int popk_plot_labels(popk_plot *p, const char *title, const char *xlabel, const char *ylabel);
/* Logarithmic (base 10) axes: non-positive values are left out of such an axis. */
void popk_plot_log(popk_plot *p, int xlog, int ylog);
/* Fixed limits (NaN: from the data, padded by 4%). */
void popk_plot_limits(popk_plot *p, double xlo, double xhi, double ylo, double yhi);
/* Where the legend goes: 0 top right (default), 1 bottom right, 2 top left, 3 bottom left. */
void popk_plot_legend_corner(popk_plot *p, int corner);
/* The same range on both axes (observed against predicted). */
void popk_plot_equal(popk_plot *p);
/* Named ticks on the x axis instead of numbers (a categorical covariate): copied. */
int popk_plot_xticks(popk_plot *p, int n, const double *at, const char *const *labels);

/* Data series; NaN (or, on a log axis, non-positive) values break lines and bands and hide
 * points. Return 0, or -1 when out of memory. */
int popk_plot_points(popk_plot *p, size_t n, const double *x, const double *y,
                     const popk_plot_style *style);
int popk_plot_line(popk_plot *p, size_t n, const double *x, const double *y,
                   const popk_plot_style *style);
int popk_plot_band(popk_plot *p, size_t n, const double *x, const double *ylo,
                   const double *yhi, const popk_plot_style *style);
/* Filled rectangles [x0, x1] x [y0, y1] (histograms). */
int popk_plot_rects(popk_plot *p, size_t n, const double *x0, const double *x1,
                    const double *y0, const double *y1, const popk_plot_style *style);
/* A horizontal line across the plot, and the identity line y = x. */
int popk_plot_hline(popk_plot *p, double y, const popk_plot_style *style);
int popk_plot_identity(popk_plot *p, const popk_plot_style *style);

/* Write the plot as one <svg> element. id must be unique in the document (it prefixes the
 * clip path's id). Returns 0, or -1 on a write error. */
int popk_plot_write(const popk_plot *p, FILE *f, const char *id);

/* Tick positions of an axis from lo to hi (what the renderer draws): fills at[] (up to max)
 * and, when labelled != NULL, whether each tick carries a label. Returns the count. Exposed
 * for tests. */
int popk_plot_ticks(double lo, double hi, int log_axis, double *at, int *labelled, int max);
/* Tick label text for value v on an axis whose major step is step (linear) or log. */
void popk_plot_tick_label(double v, double step, int log_axis, char *buf, size_t size);

#endif
