/* info.c: `q8c info MODEL.so`: what a model library holds, read from its
 * descriptor (q8model.h) through the runtime: the variants compiled in and
 * the CPU features each needs (and which one this CPU would run), the inputs
 * and outputs with their quantized form, the scratch memory a run needs, and
 * the weight bytes.
 *
 * The descriptor does not count the weights, so they are measured in the
 * file: the packed int8 weights, biases and requantization multipliers are
 * private constants of the generated code, which the linker places in the
 * library's read-only data, so the weight bytes are the summed sizes of its
 * .rodata and .lrodata sections (ELF section headers). That also counts the
 * descriptor's few strings and tables, a few hundred bytes. */
#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

/* The summed size of the read-only data sections of the ELF file at path;
 * -1 when it cannot be read as a 64-bit ELF file. */
static int64_t rodata_bytes(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  Elf64_Ehdr eh;
  int64_t total = -1;
  Elf64_Shdr *sh = NULL;
  char *names = NULL;
  if (fread(&eh, sizeof eh, 1, f) != 1 || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_shentsize != sizeof(Elf64_Shdr) ||
      eh.e_shnum == 0 || eh.e_shstrndx >= eh.e_shnum)
    goto done;
  sh = calloc(eh.e_shnum, sizeof *sh);
  if (!sh || fseek(f, (long)eh.e_shoff, SEEK_SET) != 0 ||
      fread(sh, sizeof *sh, eh.e_shnum, f) != eh.e_shnum)
    goto done;
  const Elf64_Shdr *strs = &sh[eh.e_shstrndx];
  if (strs->sh_size > (1u << 24) || !(names = calloc(1, strs->sh_size + 1)) ||
      fseek(f, (long)strs->sh_offset, SEEK_SET) != 0 ||
      fread(names, 1, strs->sh_size, f) != strs->sh_size)
    goto done;
  total = 0;
  for (int i = 0; i < eh.e_shnum; i++) {
    if (sh[i].sh_name >= strs->sh_size || sh[i].sh_type != SHT_PROGBITS)
      continue;
    const char *name = names + sh[i].sh_name;
    if (strncmp(name, ".rodata", 7) == 0 || strncmp(name, ".lrodata", 8) == 0)
      total += (int64_t)sh[i].sh_size;
  }
done:
  free(names);
  free(sh);
  fclose(f);
  return total;
}

static void print_features(uint64_t features) {
  const char *sep = "";
  if (!features)
    printf("(baseline)");
  for (int b = 0; b < 64; b++)
    if (features & (1ull << b)) {
      const char *name = q8rt_feature_name(1ull << b);
      printf("%s%s", sep, name ? name : "?");
      sep = ",";
    }
}

static void print_tensor(const q8_model_desc *md, const char *kind, const q8_tensor_desc *t) {
  char b[160];
  IrType type = driver_desc_type(t, false);
  for (int d = 0; d < type.rank; d++) /* a run-time batch: `?` */
    if (t->batch_dims >> d & 1u)
      type.dims[d] = IR_DIM_BATCH;
  ir_type_str(&type, b, sizeof b);
  if (md->nnamed > 0 && md->max_batch > 0 && (t->batch_dims & 1u)) { /* named dims */
    size_t len = (size_t)snprintf(b, sizeof b, "%s[", ir_dtype_name(type.dtype));
    for (int d = 0; d < type.rank && len < sizeof b; d++)
      len += (d < md->nnamed && (t->batch_dims >> d & 1u))
                 ? (size_t)snprintf(b + len, sizeof b - len, "%s%s", d ? ", " : "", md->named[d])
                 : (size_t)snprintf(b + len, sizeof b - len, "%s%lld", d ? ", " : "",
                                    (long long)type.dims[d]);
    if (len < sizeof b)
      snprintf(b + len, sizeof b - len, "]");
  }
  printf("%s: %s %s", kind, t->name, b);
  if (t->scale != 0) {
    char num[40];
    IrType q = driver_desc_type(t, true);
    ir_format_double(t->scale, num, sizeof num);
    printf(" quantized %s scale=%s zero_point=%d", ir_dtype_name(q.dtype), num,
           (int)t->zero_point);
  } else {
    printf(" (no quantized form)");
  }
  printf("\n");
}

int driver_info(const Options *o) {
  char err[512];
  q8rt_model *model = NULL;
  if (q8rt_load(o->model, &model, err, sizeof err) != Q8RT_OK) {
    fprintf(stderr, "%s: error: %s\n", o->model, err);
    return EXIT_INPUT;
  }
  const q8_model_desc *d = q8rt_desc(model);
  const char *chosen = q8rt_variant(model);
  printf("model: %s\n", d->name);
  printf("file: %s\n", o->model);
  printf("compiler: %s (model ABI %u)\n", d->compiler, (unsigned)d->abi_version);
  for (int i = 0; i < d->nvariants; i++) {
    printf("variant: %s features=", d->variants[i].isa);
    print_features(d->variants[i].features);
    printf("%s\n", chosen && strcmp(chosen, d->variants[i].isa) == 0 ? " (runs on this CPU)" : "");
  }
  for (int i = 0; i < d->ninputs; i++)
    print_tensor(d, "input", &d->inputs[i]);
  for (int i = 0; i < d->noutputs; i++)
    print_tensor(d, "output", &d->outputs[i]);
  if (d->max_batch == INT64_MAX)
    printf("batch: any, at each call\n");
  else if (d->max_batch > 0)
    printf("batch: 1 to %" PRId64 ", at each call\n", d->max_batch);
  for (int j = 0; d->max_batch > 0 && j < d->nnamed; j++) {
    if (d->named_max[j] == INT64_MAX)
      printf("dim: %s any, at each call\n", d->named[j]);
    else
      printf("dim: %s 1 to %" PRId64 ", at each call\n", d->named[j], d->named_max[j]);
  }
  printf("scratch_bytes: %" PRId64 "\n", d->scratch_bytes);
  if (d->max_batch > 0)
    printf("scratch_bytes_per_batch: %" PRId64 "\n", d->scratch_bytes_per_batch);
  int64_t w = rodata_bytes(o->model);
  if (w >= 0)
    printf("weight_bytes: %" PRId64 " (the library's read-only data: .rodata sections)\n", w);
  else
    printf("weight_bytes: unknown (not a 64-bit ELF file)\n");
  q8rt_free(model);
  return fflush(stdout) == 0 ? 0 : EXIT_INPUT;
}
