/* q8rt.h: the q8c runtime, the small library (libc and pthreads only) that
 * loads a compiled model (.so) and runs it.
 *
 * This version of q8c does not generate code yet, so the runtime has no entry
 * points; this header fixes the vocabulary they will share with q8c.h: the
 * element types a compiled model exchanges with its caller. */
#ifndef Q8RT_H
#define Q8RT_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  Q8RT_F32 = 1,
  Q8RT_I8 = 2,
  Q8RT_U8 = 3,
  Q8RT_I32 = 4,
} q8rt_dtype;

#ifdef __cplusplus
}
#endif

#endif
