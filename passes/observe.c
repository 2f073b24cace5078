/* observe.c: calibration observers, which turn the activation values the
 * calibration pass feeds them, batch by batch (pass_observer_update), into a
 * range [lo, hi] for one tensor, by minmax, ma-minmax or one of three methods
 * over a fixed histogram (percentile, entropy, mse), in memory fixed when the
 * observer is made and ignoring NaN and +-Inf. Each method's exact rules, and
 * what they cost, are in docs/quantization.md, "Calibration observers,
 * exactly". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes.h"

enum { DEFAULT_BINS = 2048, DEFAULT_LEVELS = 256 };
#define DEFAULT_MOMENTUM 0.01
#define DEFAULT_PERCENTILE 99.99
/* MXNet's _smooth_distribution default. */
#define KL_EPS 0.0001

struct PassObserver {
  PassCalibConfig cfg;  /* with defaults filled in */
  int pass;             /* 1, or 2 once pass_observer_next_pass was called */

  /* Pass 1 (the only pass of the minmax methods). */
  int64_t nan, inf;     /* values ignored */
  int64_t nfinite;
  double min, max;      /* of every finite value seen */
  double ma_min, ma_max;/* ma-minmax: the moving averages */
  bool ma_started;

  /* Pass 2 (histogram methods): counts over [hist_lo, hist_hi]. */
  double hist_lo, hist_hi;
  int64_t hist_total;
  int64_t *hist;        /* bins entries */
  /* Scratch for pass_observer_range, 3 * (bins + 1) doubles. It holds
   * nothing between calls, which is why a const observer may write it. */
  double *work;
};

static bool is_histogram_method(PassCalibMethod m) {
  return m == PASS_CALIB_PERCENTILE || m == PASS_CALIB_ENTROPY || m == PASS_CALIB_MSE;
}

/* Fields out of their documented range take the defaults: the driver checks
 * user input and reports it, so here a bad value can only be a caller's
 * zero-initialised config. */
static PassCalibConfig normalise(const PassCalibConfig *in) {
  PassCalibConfig c = *in;
  if (c.bins <= 0)
    c.bins = DEFAULT_BINS;
  if (c.levels < 2)
    c.levels = DEFAULT_LEVELS;
  if (!(c.momentum > 0 && c.momentum <= 1))
    c.momentum = DEFAULT_MOMENTUM;
  if (!(c.percentile > 50 && c.percentile <= 100))
    c.percentile = DEFAULT_PERCENTILE;
  /* Entropy needs at least as many bins as quantized bins. */
  if (c.method == PASS_CALIB_ENTROPY && c.bins < c.levels)
    c.bins = c.levels;
  return c;
}

PassObserver *pass_observer_new(const PassCalibConfig *cfg) {
  PassCalibConfig c = normalise(cfg);
  bool hist = is_histogram_method(c.method);
  /* One block: the struct, then the counts, then the scratch. The struct's
   * size is a multiple of 8 (it holds doubles), so both arrays are aligned. */
  size_t nhist = hist ? (size_t)c.bins : 0;
  size_t nwork = hist ? 3 * ((size_t)c.bins + 1) : 0;
  size_t size = sizeof(PassObserver) + nhist * sizeof(int64_t) + nwork * sizeof(double);
  PassObserver *o = calloc(1, size);
  if (!o)
    return NULL;
  o->cfg = c;
  o->pass = 1;
  o->min = INFINITY;
  o->max = -INFINITY;
  if (hist) {
    o->hist = (int64_t *)(o + 1);
    o->work = (double *)(o->hist + nhist);
  }
  return o;
}

void pass_observer_free(PassObserver *o) { free(o); }

int pass_observer_passes(const PassObserver *o) {
  return is_histogram_method(o->cfg.method) ? 2 : 1;
}

void pass_observer_next_pass(PassObserver *o) {
  if (!is_histogram_method(o->cfg.method))
    return;
  o->pass = 2;
  memset(o->hist, 0, (size_t)o->cfg.bins * sizeof *o->hist);
  o->hist_total = 0;
  if (o->cfg.method == PASS_CALIB_ENTROPY) {
    o->hist_lo = 0;
    o->hist_hi = o->nfinite ? fmax(fabs(o->min), fabs(o->max)) : 0;
  } else {
    o->hist_lo = o->nfinite ? o->min : 0;
    o->hist_hi = o->nfinite ? o->max : 0;
  }
}

/* Edge k of the pass-2 histogram, as numpy.linspace computes it. */
static double edge(const PassObserver *o, int k) {
  if (k >= o->cfg.bins)
    return o->hist_hi;
  double step = (o->hist_hi - o->hist_lo) / o->cfg.bins;
  return (double)k * step + o->hist_lo;
}

/* The bin of x, as numpy.histogram finds it: scaling alone can be one off
 * near an edge, so the index is then checked against the edges themselves. */
static int bin_of(const PassObserver *o, double x) {
  int nb = o->cfg.bins;
  double width = o->hist_hi - o->hist_lo;
  if (!(width > 0) || x <= o->hist_lo)
    return 0;  /* a zero-width histogram keeps everything in bin 0 */
  if (x >= o->hist_hi)
    return nb - 1;
  double f = (x - o->hist_lo) * (nb / width);
  int k = f >= nb ? nb - 1 : (int)f;
  if (x < edge(o, k))
    k--;
  else if (k != nb - 1 && x >= edge(o, k + 1))
    k++;
  return k;
}

static void update_first_pass(PassObserver *o, const float *x, int64_t n) {
  double bmin = INFINITY, bmax = -INFINITY;
  int64_t finite = 0;
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    if (isnan(v)) {
      o->nan++;
    } else if (isinf(v)) {
      o->inf++;
    } else {
      finite++;
      if (v < bmin)
        bmin = v;
      if (v > bmax)
        bmax = v;
    }
  }
  if (!finite)
    return;  /* and ma-minmax skips the batch */
  o->nfinite += finite;
  o->min = fmin(o->min, bmin);
  o->max = fmax(o->max, bmax);
  if (o->cfg.method == PASS_CALIB_MA_MINMAX) {
    if (!o->ma_started) {
      o->ma_min = bmin;
      o->ma_max = bmax;
      o->ma_started = true;
    } else {
      o->ma_min += o->cfg.momentum * (bmin - o->ma_min);
      o->ma_max += o->cfg.momentum * (bmax - o->ma_max);
    }
  }
}

static void update_second_pass(PassObserver *o, const float *x, int64_t n) {
  bool absolute = o->cfg.method == PASS_CALIB_ENTROPY;
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    if (!isfinite(v))
      continue;  /* counted in pass 1 */
    double d = absolute ? fabs((double)v) : (double)v;
    o->hist[bin_of(o, d)]++;
    o->hist_total++;
  }
}

void pass_observer_update(PassObserver *o, const float *x, int64_t n) {
  if (n <= 0)
    return;
  if (o->pass == 2)
    update_second_pass(o, x, n);
  else
    update_first_pass(o, x, n);
}

/* ---- the histogram methods ---- */

static void percentile_range(const PassObserver *o, double *lo, double *hi) {
  int nb = o->cfg.bins;
  double target = o->cfg.percentile / 100.0 * (double)o->hist_total;
  int khi = nb - 1;
  int64_t cum = 0;
  for (int k = 0; k < nb; k++) {
    cum += o->hist[k];
    if ((double)cum >= target) {
      khi = k;
      break;
    }
  }
  int klo = 0;
  cum = 0;
  for (int k = nb - 1; k >= 0; k--) {
    cum += o->hist[k];
    if ((double)cum >= target) {
      klo = k;
      break;
    }
  }
  *lo = edge(o, klo);
  *hi = edge(o, khi + 1);
}

/* MXNet's _smooth_distribution in place on d[0..n): false when the result
 * is not a distribution (all zeros, or a non-zero pushed to <= 0). */
static bool smooth(double *d, int n) {
  int zeros = 0;
  for (int k = 0; k < n; k++)
    zeros += d[k] == 0;
  int nonzeros = n - zeros;
  if (nonzeros == 0)
    return false;
  double eps1 = KL_EPS * zeros / nonzeros;
  for (int k = 0; k < n; k++) {
    d[k] = d[k] == 0 ? KL_EPS : d[k] - eps1;
    if (d[k] <= 0)
      return false;
  }
  return true;
}

/* KL(P || Q) for the first i bins clipped as docs/quantization.md describes;
 * INFINITY when the smoothed distributions are not valid. */
static double kl_for(const PassObserver *o, int nq, int i, int64_t outliers, double *p,
                     double *q) {
  const int64_t *h = o->hist;
  for (int k = 0; k < i; k++)
    p[k] = (double)h[k];
  p[i - 1] += (double)outliers;

  int m = i / nq;
  for (int j = 0; j < nq; j++) {
    int start = j * m, stop = j == nq - 1 ? i : start + m;
    double total = 0;
    int nonzero = 0;
    for (int k = start; k < stop; k++) {
      total += (double)h[k];
      nonzero += p[k] != 0;
    }
    for (int k = start; k < stop; k++)
      q[k] = p[k] != 0 ? total / nonzero : 0;  /* p[k] != 0 implies nonzero > 0 */
  }

  if (!smooth(p, i) || !smooth(q, i))
    return INFINITY;
  double sp = 0, sq = 0;
  for (int k = 0; k < i; k++) {
    sp += p[k];
    sq += q[k];
  }
  double kl = 0;
  for (int k = 0; k < i; k++) {
    double pk = p[k] / sp, qk = q[k] / sq;
    kl += pk * log(pk / qk);
  }
  return kl;
}

static void entropy_range(const PassObserver *o, double *lo, double *hi) {
  int nb = o->cfg.bins, nq = o->min >= 0 ? o->cfg.levels : o->cfg.levels / 2;
  double *p = o->work, *q = o->work + nb + 1;
  int64_t outliers = 0;  /* h[i] + ... + h[nb-1] */
  for (int k = nq; k < nb; k++)
    outliers += o->hist[k];
  int best = nb;
  double best_kl = INFINITY;
  for (int i = nq; i <= nb; i++) {
    if (i > nq)
      outliers -= o->hist[i - 1];
    double kl = kl_for(o, nq, i, outliers, p, q);
    if (kl < best_kl) {
      best_kl = kl;
      best = i;
    }
  }
  double w = (o->hist_hi - o->hist_lo) / nb;
  double t = (best + 0.5) * w;
  *lo = fmax(o->min, -t);
  *hi = fmin(o->max, t);
}

static void mse_range(const PassObserver *o, double *lo, double *hi) {
  int nb = o->cfg.bins;
  const int64_t *h = o->hist;
  /* In units of w^2: left[s] = sum over k < s of h[k] (s - k - 1/2)^2,
   * right[t] = sum over k >= t of h[k] (k + 1/2 - t)^2, cum[s] = h[0..s).
   * Moving the edge by one bin adds 1 to every distance d, and
   * (d + 1)^2 = d^2 + 2d + 1, so each table is a running sum of the
   * previous entry, twice the running first moment and the running count. */
  double *left = o->work, *right = o->work + (nb + 1), *cum = o->work + 2 * (nb + 1);
  double moment = 0, count = 0;
  left[0] = 0;
  cum[0] = 0;
  for (int s = 0; s < nb; s++) {
    double c = (double)h[s];
    left[s + 1] = left[s] + 2 * moment + count + 0.25 * c;
    moment += count + 0.5 * c;
    count += c;
    cum[s + 1] = count;
  }
  moment = count = 0;
  right[nb] = 0;
  for (int t = nb; t > 0; t--) {
    double c = (double)h[t - 1];
    right[t - 1] = right[t] + 2 * moment + count + 0.25 * c;
    moment += count + 0.5 * c;
    count += c;
  }

  /* A range that left out 0 would be widened to include it later, and its
   * modelled error would then be wrong: when the data spans 0, so must the
   * range (e[s] <= 0 <= e[t]). */
  int s_last = nb - 1, t_first = 1;
  if (o->hist_lo < 0 && o->hist_hi > 0) {
    while (edge(o, s_last) > 0)
      s_last--;
    while (edge(o, t_first) < 0)
      t_first++;
  }

  double l1 = o->cfg.levels - 1;
  double inside = 1.0 / (12.0 * l1 * l1);  /* d^2 / 12 per (t - s)^2 */
  int best_s = 0, best_t = nb;
  double best = INFINITY;
  for (int s = 0; s <= s_last; s++) {
    for (int t = nb; t > s && t >= t_first; t--) {
      double span = t - s;
      double e = span * span * inside * (cum[t] - cum[s]) + left[s] + right[t];
      if (e < best) {
        best = e;
        best_s = s;
        best_t = t;
      }
    }
  }
  *lo = edge(o, best_s);
  *hi = edge(o, best_t);
}

/* ---- the result ---- */

/* "12 NaN and 3 Inf values ignored", or nothing when all were finite. */
static void note_ignored(const PassObserver *o, char *buf, size_t len) {
  long long nan = (long long)o->nan, inf = (long long)o->inf;
  const char *values = nan + inf == 1 ? "value" : "values";
  if (nan && inf)
    snprintf(buf, len, "%lld NaN and %lld Inf %s ignored", nan, inf, values);
  else if (nan)
    snprintf(buf, len, "%lld NaN %s ignored", nan, values);
  else if (inf)
    snprintf(buf, len, "%lld Inf %s ignored", inf, values);
  else if (len)
    buf[0] = 0;
}

/* Observers hold no global state, but one observer is not safe to use from
 * two threads at once: this writes its scratch space. */
bool pass_observer_range(const PassObserver *o, float *lo, float *hi, char *note,
                         size_t notelen) {
  char ignored[96], remark[96] = "";
  if (!note)
    notelen = 0;
  if (notelen)
    note[0] = 0;
  *lo = *hi = 0;
  if (o->nfinite == 0) {
    if (notelen)
      snprintf(note, notelen, "no finite values (%lld NaN, %lld Inf)", (long long)o->nan,
               (long long)o->inf);
    return false;
  }

  double l = o->min, h = o->max;
  if (o->min == o->max) {
    snprintf(remark, sizeof remark, "all values equal %.9g", o->min);
  } else if (o->cfg.method == PASS_CALIB_MA_MINMAX) {
    l = o->ma_min;
    h = o->ma_max;
  } else if (is_histogram_method(o->cfg.method) && o->hist_total == 0) {
    /* A caller bug rather than bad data, but a usable answer exists. */
    snprintf(remark, sizeof remark, "the histogram pass did not run; using min and max");
  } else if (o->cfg.method == PASS_CALIB_PERCENTILE) {
    percentile_range(o, &l, &h);
  } else if (o->cfg.method == PASS_CALIB_ENTROPY) {
    entropy_range(o, &l, &h);
  } else if (o->cfg.method == PASS_CALIB_MSE) {
    mse_range(o, &l, &h);
  }
  *lo = (float)l;
  *hi = (float)h;

  note_ignored(o, ignored, sizeof ignored);
  if (notelen) {
    if (remark[0] && ignored[0])
      snprintf(note, notelen, "%s; %s", remark, ignored);
    else
      snprintf(note, notelen, "%s", remark[0] ? remark : ignored);
  }
  return true;
}
