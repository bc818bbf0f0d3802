// Xattr blobs on media (fs/xattr_store.h).
#include "fs/xattr_store.h"

#include <string>

#include "fs/inode_table.h"
#include "fs/ondisk/codec.h"

namespace daxfs::fs {

Status XattrStore::store_locked(Txn& txn, Inode& in) {
  std::string blob = ondisk::encode_xattrs(in.xattrs);
  if (blob.size() > ondisk::kMaxXattrBlob) return error(ENOSPC);
  uint64_t old_block = in.d.xattr_block, old_blocks = (in.d.xattr_length + kBlockSize - 1) / kBlockSize;
  uint64_t new_block = 0;
  if (!blob.empty()) {
    uint64_t want = (blob.size() + kBlockSize - 1) / kBlockSize;
    BlockRange r = TRY(space_.alloc_locked(want, 0));
    if (r.length < want) {
      alloc_.free(r.start, r.length);  // never referenced: back at once; the inode is unchanged
      return error(ENOSPC);
    }
    new_block = r.start;
    // The new blob is durable before the transaction that points the inode at it.
    dev_.memcpy_persist(r.start * kBlockSize, blob.data(), blob.size());
  }
  in.d.xattr_block = new_block;
  in.d.xattr_length = static_cast<uint32_t>(blob.size());
  if (old_block) txn.free_after_commit(old_block, old_blocks);
  store_inode(txn, in);
  return {};
}

}  // namespace daxfs::fs
