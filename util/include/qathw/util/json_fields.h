// Fields of a JSON document read with exact types (bundle manifests, checkpoint headers): an
// integer field must hold an integer in range (no fraction, no 64-bit value cast down), an
// object holds only the keys it may, and every error, an `Error` exception, names the file, the
// field and what was expected.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace qathw::util {

template <typename Error>
class JsonFields {
 public:
  // `document`: what the file holds, for messages ("manifest", "header").
  JsonFields(std::string file, std::string document) : file_(std::move(file)), document_(std::move(document)) {}

  const std::string& file() const { return file_; }

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw Error(file_ + ": field '" + field + "': " + what);
  }

  // A value as a message shows it: its JSON cut at 64 characters, or for an array or object of
  // more than 16 values its kind (dumping one nested a million deep would exhaust the stack).
  static std::string shown(const nlohmann::json& v) {
    if (v.is_structured()) {
      std::vector<const nlohmann::json*> todo = {&v};
      for (std::size_t seen = 0; !todo.empty(); ++seen) {
        if (seen == 16) return v.is_array() ? "an array" : "an object";
        const nlohmann::json* x = todo.back();
        todo.pop_back();
        if (x->is_structured())
          for (const auto& e : *x) todo.push_back(&e);
      }
    }
    std::string text = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return text.size() > 64 ? text.substr(0, 64) + "..." : text;
  }

  const nlohmann::json& at(const nlohmann::json& j, const char* key, const std::string& field) const {
    if (!j.is_object()) fail(field, "its parent is not an object");
    const auto it = j.find(key);
    if (it == j.end()) fail(field, "missing");
    return *it;
  }

  // `v` (the value of `field`; "" for the document) must be an object holding only the keys
  // `allowed`: a misspelt or foreign key is an error, never ignored.
  void check_object(const nlohmann::json& v, const std::string& field,
                    std::initializer_list<std::string_view> allowed) const {
    check_object(v, field, std::vector<std::string_view>(allowed));
  }
  template <typename Names>
  void check_object(const nlohmann::json& v, const std::string& field, const Names& allowed) const {
    if (!v.is_object()) {
      if (field.empty()) throw Error(file_ + ": the " + document_ + " must be a JSON object, not " + shown(v));
      fail(field, "must be an object, not " + shown(v));
    }
    for (const auto& [key, value] : v.items()) {
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      fail(field.empty() ? key : field + "." + key, "unknown field; allowed here: " + list);
    }
  }

  std::int64_t integer(const nlohmann::json& v, const std::string& field, std::int64_t lo, std::int64_t hi) const {
    const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    std::int64_t x = 0;
    if (v.is_number_unsigned()) {
      const std::uint64_t u = v.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail(field, std::to_string(u) + " is out of range " + range);
      x = static_cast<std::int64_t>(u);
    } else if (v.is_number_integer()) {
      x = v.get<std::int64_t>();
    } else {
      fail(field, "must be an integer in " + range + ", not " + shown(v));
    }
    if (x < lo || x > hi) fail(field, std::to_string(x) + " is out of range " + range);
    return x;
  }
  std::int64_t integer(const nlohmann::json& j, const char* key, const std::string& field, std::int64_t lo,
                       std::int64_t hi) const {
    return integer(at(j, key, field), field, lo, hi);
  }

  std::string string(const nlohmann::json& j, const char* key, const std::string& field) const {
    const nlohmann::json& v = at(j, key, field);
    if (!v.is_string()) fail(field, "must be a string, not " + shown(v));
    return v.get<std::string>();
  }

  bool boolean(const nlohmann::json& j, const char* key, const std::string& field) const {
    const nlohmann::json& v = at(j, key, field);
    if (!v.is_boolean()) fail(field, "must be true or false, not " + shown(v));
    return v.get<bool>();
  }

  const nlohmann::json& array(const nlohmann::json& j, const char* key, const std::string& field) const {
    const nlohmann::json& v = at(j, key, field);
    if (!v.is_array()) fail(field, "must be an array, not " + shown(v));
    return v;
  }

 private:
  std::string file_, document_;
};

}  // namespace qathw::util
