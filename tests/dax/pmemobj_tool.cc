// pmemobj_tool: PMDK on a daxfs file. Creates a 16 MiB libpmemobj pool (layout "daxfs") at FILE,
// sets the root object's counter and string in one transaction, closes, reopens and checks them,
// then prints "reopened ok" and "is_pmem N": libpmem's verdict on a pmem_map_file() mapping of the
// same file (1 when MAP_SYNC was accepted, as under `daxfsctl run`; 0 when PMDK must msync).
//   pmemobj_tool FILE
#include <libpmem.h>
#include <libpmemobj.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {

constexpr size_t kPoolSize = size_t{16} << 20;
constexpr uint64_t kCounter = 0x5eed5eedULL;
constexpr char kText[] = "stored in a pmemobj transaction on daxfs";

struct root {
  uint64_t counter;
  char text[64];
};

int fail(const char* what) {
  printf("%s: %s\n", what, pmemobj_errormsg());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: pmemobj_tool FILE\n");
    return 2;
  }
  const char* path = argv[1];
  unlink(path);
  PMEMobjpool* pop = pmemobj_create(path, "daxfs", kPoolSize, 0644);
  if (!pop) return fail("pmemobj_create");
  PMEMoid root = pmemobj_root(pop, sizeof(struct root));
  if (OID_IS_NULL(root)) return fail("pmemobj_root");
  struct root* r = static_cast<struct root*>(pmemobj_direct(root));
  int aborted = 0;
  TX_BEGIN(pop) {
    pmemobj_tx_add_range(root, 0, sizeof(struct root));
    r->counter = kCounter;
    strcpy(r->text, kText);
  }
  TX_ONABORT { aborted = 1; }
  TX_END
  if (aborted) return fail("transaction");
  pmemobj_close(pop);

  pop = pmemobj_open(path, "daxfs");
  if (!pop) return fail("pmemobj_open");
  r = static_cast<struct root*>(pmemobj_direct(pmemobj_root(pop, sizeof(struct root))));
  if (r->counter != kCounter || strcmp(r->text, kText) != 0) {
    printf("reopened: counter %llx text \"%.63s\"\n", static_cast<unsigned long long>(r->counter), r->text);
    return 1;
  }
  pmemobj_close(pop);
  printf("reopened ok\n");

  size_t mapped;
  int is_pmem;
  void* p = pmem_map_file(path, 0, 0, 0, &mapped, &is_pmem);
  if (!p) {
    printf("pmem_map_file: %s\n", pmem_errormsg());
    return 1;
  }
  printf("is_pmem %d\n", is_pmem);
  pmem_unmap(p, mapped);
  return 0;
}
