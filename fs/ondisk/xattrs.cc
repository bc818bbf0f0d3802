// The byte layouts of the xattr blob and of POSIX ACLs, both ways (codec.h).
#include <cstring>

#include "fs/ondisk/codec.h"

namespace daxfs::fs::ondisk {

Decoded<std::vector<AclEntry>> decode_acl(std::string_view v) {
  using D = Decoded<std::vector<AclEntry>>;
  if (v.size() < 4 || (v.size() - 4) % 8 != 0) return D::invalid("is not a whole number of ACL entries");
  uint32_t version;
  memcpy(&version, v.data(), 4);
  if (version != kAclVersion) return D::invalid("has an ACL version other than 2");
  std::vector<AclEntry> out;
  int user_obj = 0, group_obj = 0, other = 0, mask = 0, named = 0;
  for (size_t i = 4; i < v.size(); i += 8) {
    AclEntry e;
    memcpy(&e, v.data() + i, 8);
    if (e.perm & ~7u) return D::invalid("has an ACL entry with unknown permission bits");
    switch (e.tag) {
      case kAclUserObj: user_obj++; break;
      case kAclGroupObj: group_obj++; break;
      case kAclOther: other++; break;
      case kAclMask: mask++; break;
      case kAclUser:
      case kAclGroup: named++; break;
      default: return D::invalid("has an ACL entry with an unknown tag");
    }
    out.push_back(e);
  }
  if (user_obj != 1 || group_obj != 1 || other != 1) return D::invalid("lacks an owner, group or other ACL entry");
  if (mask > 1 || (named != 0 && mask != 1)) return D::invalid("has a wrong ACL mask entry");
  return out;
}

std::string encode_acl(const std::vector<AclEntry>& acl) {
  std::string v(4 + acl.size() * 8, '\0');
  memcpy(v.data(), &kAclVersion, 4);
  for (size_t i = 0; i < acl.size(); i++) memcpy(v.data() + 4 + i * 8, &acl[i], 8);
  return v;
}

const char* xattr_length_error(uint64_t length) {
  if (length == 0) return "has a length of 0";
  if (length > kMaxXattrBlob) return "is longer than 1 MiB";
  return nullptr;
}

const char* xattr_blob_error(uint64_t block, uint64_t length, const DataArea& area) {
  if (const char* why = xattr_length_error(length)) return why;
  if (!area.contains(block, (length + kBlockSize - 1) / kBlockSize)) return "is outside the data area";
  return nullptr;
}

Decoded<std::vector<Xattr>> parse_xattrs(std::string_view blob) {
  using D = Decoded<std::vector<Xattr>>;
  std::vector<Xattr> out;
  uint64_t pos = 0, n = blob.size();
  while (pos < n) {
    if (n - pos < 5) return D::invalid("ends inside an attribute header");
    uint8_t name_length = static_cast<uint8_t>(blob[pos]);
    uint32_t value_length;
    memcpy(&value_length, blob.data() + pos + 1, 4);
    pos += 5;
    if (name_length == 0) return D::invalid("has an attribute with an empty name");
    if (value_length > kMaxXattrValue) return D::invalid("has a value longer than 64 KiB");
    if (n - pos < uint64_t{name_length} + value_length) return D::invalid("ends inside an attribute");
    std::string_view name = blob.substr(pos, name_length);
    if (name.find('\0') != std::string_view::npos) return D::invalid("has an attribute name with a NUL byte");
    out.push_back({std::string(name), std::string(blob.substr(pos + name_length, value_length))});
    pos += uint64_t{name_length} + value_length;
  }
  return out;
}

const char* xattr_error(const Xattr& x, bool is_dir) {
  bool access = x.name == kAclAccess, dflt = x.name == kAclDefault;
  if (!access && !dflt) return nullptr;
  if (dflt && !is_dir) return "holds a default ACL on a non-directory";
  return decode_acl(x.value).why();
}

Decoded<std::map<std::string, std::string>> decode_xattrs(std::string_view blob, bool is_dir) {
  using D = Decoded<std::map<std::string, std::string>>;
  auto attrs = parse_xattrs(blob);
  if (!attrs) return D::invalid(attrs.why());
  std::map<std::string, std::string> out;
  for (const Xattr& x : *attrs) {
    if (const char* why = xattr_error(x, is_dir)) return D::invalid(why);
    if (!out.emplace(x.name, x.value).second) return D::invalid("holds two attributes of one name");
  }
  return out;
}

bool xattr_namespace_ok(std::string_view name) {
  return name.starts_with("user.") || name.starts_with("trusted.") || name.starts_with("security.") ||
         name == kAclAccess || name == kAclDefault;
}

void append_xattr(std::string& blob, std::string_view name, std::string_view value) {
  uint8_t nl = static_cast<uint8_t>(name.size());
  uint32_t vl = static_cast<uint32_t>(value.size());
  blob.push_back(static_cast<char>(nl));
  blob.append(reinterpret_cast<const char*>(&vl), 4);
  blob.append(name);
  blob.append(value);
}

std::string encode_xattrs(const std::map<std::string, std::string>& xattrs) {
  std::string blob;
  for (const auto& [name, value] : xattrs) append_xattr(blob, name, value);
  return blob;
}

}  // namespace daxfs::fs::ondisk
