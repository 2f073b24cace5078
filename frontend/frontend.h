/* frontend.h: from files to IR: the text-IR lexer and parser, and the loaders
 * of the file formats a model and its data come in (safetensors weights, .npy
 * arrays, and the JSON inside safetensors headers).
 *
 * Loaders report problems as a message without a location into a caller's
 * buffer (`err`, `errlen`); the parser wraps them with the position of the
 * directive that named the file. Nothing here prints or exits.
 *
 * The API is grouped by the file that implements it; prefix fe_. */
#ifndef Q8_FRONTEND_H
#define Q8_FRONTEND_H

#include <stdio.h>

#include "../ir/ir.h"

/* ---- lexer.c ---- */

typedef enum {
  FE_TK_EOF,
  FE_TK_IDENT,   /* model, weights, op names, dtypes, attribute keys */
  FE_TK_LOCAL,   /* %name: text excludes the sigil */
  FE_TK_GLOBAL,  /* @name: text excludes the sigil */
  FE_TK_NUMBER,
  FE_TK_STRING,  /* text is the raw body between the quotes */
  FE_TK_PUNCT,   /* one of { } [ ] , : = ? */
} FeTokKind;

typedef struct {
  FeTokKind kind;
  const char *text;
  int len;
  IrLoc loc;
  double num;    /* FE_TK_NUMBER */
  bool is_int;   /* FE_TK_NUMBER written without '.' or exponent */
} FeToken;

typedef struct {
  const char *p;
  const char *line_start;
  int line;
  IrDiag *diag;
} FeLexer;

void fe_lex_init(FeLexer *lx, const char *src, IrDiag *diag);
/* The next token; false (with a diagnostic) on a malformed one. */
bool fe_lex_next(FeLexer *lx, FeToken *tok);

/* ---- parser.c ---- */

/* Parse the text IR in `src` (NUL-terminated; the module keeps a copy);
 * `path` names it in diagnostics and locates relative weights files. Loads the
 * weights, resolves `@names`, infers shapes and verifies. Returns a module
 * whose diag.failed tells whether it worked (the module is kept so that the
 * message can be read); aborts only if memory for the module itself runs out. */
IrModule *fe_parse(const char *path, const char *src);
/* Read the file at `path` ("-" for standard input) and parse it; a file that
 * cannot be read gives a failed module with a message. */
IrModule *fe_parse_file(const char *path);
/* The same, binding symbolic dimensions by name to numbers: an ONNX
 * model's (dim_param) or a text model's named dims (`f32[B, T, 64]` with
 * --dim T=16); `dims` may be NULL. */
typedef struct FeDims FeDims;
IrModule *fe_parse_file_dims(const char *path, const FeDims *dims);
IrModule *fe_parse_dims(const char *path, const char *src, const FeDims *dims);

/* ---- onnx.c, onnx_read.c, onnx_build.c: ONNX models (docs/import.md) ---- */

/* Symbolic dimensions bound by name (`q8c --dim seq=128`). A dim_param
 * bound here becomes that number; one left unbound becomes the batch `?` at
 * axis 0 and is an error elsewhere. */
enum { FE_MAX_DIMS = 16 };
struct FeDims {
  int n;
  char name[FE_MAX_DIMS][64];
  int64_t value[FE_MAX_DIMS];
};

/* An ONNX model (protobuf bytes) as an IrModule: the same contract as
 * fe_parse (check diag.failed). `path` names it in diagnostics (`path: error:
 * node 3 'name' (Op, opset 17): ...`); with `from_file`, external data files
 * are resolved inside its folder. */
IrModule *fe_onnx_parse(const char *path, const unsigned char *bytes, size_t size, bool from_file,
                        const FeDims *dims);
IrModule *fe_onnx_parse_file(const char *path, const FeDims *dims);
/* Is the file at `path`, whose first `n` bytes are `head`, an ONNX model?
 * By its suffix `.onnx`, or by content (protobuf field 1 first). */
bool fe_onnx_is_onnx(const char *path, const unsigned char *head, size_t n);

/* ---- safetensors.c ---- */

/* One tensor of a safetensors file. F32, F16 and BF16 are converted to f32 on
 * load; I8, U8, I32 and I64 are kept as they are. */
typedef struct {
  const char *name;
  IrType type;         /* no `?` dims */
  const void *data;    /* dense row-major, in `type.dtype`; NULL for a view */
  size_t nbytes;
} FeTensor;

/* An f32 tensor left in its file (fe_safetensors_map): its elements are
 * `src` (in the mapping) in form `stored`, for ir_add_const_view with
 * fe_drop_pages. */
typedef struct {
  bool is_view;
  IrStored stored;
  const void *src;
} FeView;

/* A tensor of a valid safetensors dtype q8c does not take (F64, BOOL, U64,
 * ...): skipped on load, since models leave such buffers unused (PyTorch's
 * `num_batches_tracked`); only using one is an error. */
typedef struct {
  const char *name;
  const char *dtype;   /* as the file spells it */
} FeSkipped;

typedef struct {
  int n;
  FeTensor *tensors;
  int nskipped;
  FeSkipped *skipped;
  FeView *views;       /* one per tensor (fe_safetensors_map), else NULL */
} FeTensorSet;

/* Read and validate a whole safetensors file; all memory comes from `a`. On a
 * malformed file returns false with a message such as
 * "header length 4096 is past the end of the file (100 bytes)". */
bool fe_safetensors_read(IrArena *a, const char *path, FeTensorSet *out, char *err,
                         size_t errlen);
/* Same, with the file mapped for as long as the arena lives and its F32,
 * F16 and BF16 tensors left in it as views (FeTensor.view): nothing is
 * converted until a constant's f32 form is asked for (ir_const_data). A file
 * that cannot be mapped is read as fe_safetensors_read does. */
bool fe_safetensors_map(IrArena *a, const char *path, FeTensorSet *out, char *err,
                        size_t errlen);
/* Let the pages of [p, p + n) of a read-only private file mapping go: they
 * are read again from the file if touched (a view's drop_src). */
void fe_drop_pages(const void *p, size_t n);
/* Same, from bytes in memory (for tests and fuzzing). */
bool fe_safetensors_parse(IrArena *a, const unsigned char *bytes, size_t size, FeTensorSet *out,
                          char *err, size_t errlen);
const FeTensor *fe_tensorset_find(const FeTensorSet *s, const char *name);
/* Write tensors (f32, i8, u8, i32, i64) as a safetensors file. */
bool fe_safetensors_write(const char *path, const FeTensor *tensors, int n, char *err,
                          size_t errlen);

/* ---- json.c ---- */

typedef enum { FE_JSON_NULL, FE_JSON_BOOL, FE_JSON_NUM, FE_JSON_STR, FE_JSON_ARR, FE_JSON_OBJ } FeJsonKind;

typedef struct FeJson FeJson;
struct FeJson {
  FeJsonKind kind;
  bool b;
  double num;
  const char *str;  /* FE_JSON_STR: decoded, NUL-terminated */
  size_t len;       /* FE_JSON_STR: bytes; ARR/OBJ: number of items */
  FeJson *items;    /* ARR/OBJ items */
  const char **keys;/* OBJ keys, parallel to items */
};

/* Parse exactly one JSON value (RFC 8259) from text[0..len). Nesting deeper
 * than 64 is refused. On error returns NULL with "... at offset N" in err. */
FeJson *fe_json_parse(IrArena *a, const char *text, size_t len, char *err, size_t errlen);
const FeJson *fe_json_get(const FeJson *obj, const char *key);

/* ---- npy.c ---- */

/* Read a whole .npy array (format 1.0-3.0, C order, little-endian) of f4, f8,
 * i1, u1 or i4. f8 is converted to f32; the others keep their dtype. `out->data`
 * is malloc'd; the caller frees it. */
bool fe_npy_read(const char *path, IrTensor *out, char *err, size_t errlen);
/* Write a tensor as .npy format 1.0. */
bool fe_npy_write(const char *path, const IrTensor *t, char *err, size_t errlen);

/* Stream an .npy array along its first axis, a few rows at a time, so that a
 * large calibration set is never held in memory at once. */
typedef struct {
  FILE *f;
  IrType type;          /* of the whole array, converted dtype (f8 -> f32) */
  int file_dtype_size;  /* bytes per element in the file */
  bool file_is_f64;
  int64_t rows_read;
} FeNpyReader;

bool fe_npy_open(FeNpyReader *r, const char *path, char *err, size_t errlen);
/* Read up to `max_rows` rows into `dst` (room for max_rows * row elements of
 * r->type.dtype); returns the number of rows read, 0 at the end, -1 on error. */
int64_t fe_npy_read_rows(FeNpyReader *r, void *dst, int64_t max_rows, char *err, size_t errlen);
void fe_npy_close(FeNpyReader *r);

#endif
