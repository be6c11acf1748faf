// qathw-corpus-tool: builds the malformed inputs of tests/corpus/ from a valid one, so that a case
// states only what it changes.
//
//   qathw-corpus-tool json-patch IN PATCH OUT
//       OUT = IN with the RFC 6902 JSON Patch in file PATCH applied, written as save_bundle writes
//       a manifest (2-space indent).
//   qathw-corpus-tool checkpoint IN OUT [--header-patch FILE] [--float INDEX VALUE]
//                                       [--tensor-bytes N] [--length N] [--crc wrong]
//       OUT = checkpoint IN (magic, header length, JSON header, tensor data, CRC-32) with its header
//       patched, float INDEX of the tensor data set to VALUE (nan, inf, -1, ...), N zero bytes
//       appended to the tensor data (or -N removed), the header length field set to N (+N, -N:
//       that much more or less than the header's length), and the CRC-32 recomputed unless
//       --crc wrong (then it is off by one).
//   qathw-corpus-tool run SECONDS RSS_FILE COMMAND [ARGS...]
//       Runs COMMAND in a process group of its own, with 1 GiB of address space, killing the group
//       after SECONDS (exit status 124); writes the peak resident set of COMMAND and its waited-for
//       children, in KiB, to RSS_FILE; exits with COMMAND's status (128 + N for signal N).
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

namespace {

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  if (!out) throw std::runtime_error(path + ": cannot write");
}

nlohmann::json patched(const nlohmann::json& doc, const std::string& patch_file) {
  return doc.patch(nlohmann::json::parse(read(patch_file)));
}

int json_patch(const std::string& in, const std::string& patch, const std::string& out) {
  write_file(out, patched(nlohmann::json::parse(read(in)), patch).dump(2) + "\n");
  return 0;
}

int checkpoint(int argc, char** argv) {
  const std::string bytes = read(argv[2]);
  constexpr std::size_t kMagic = 8;
  if (bytes.size() < kMagic + 8 + 4) throw std::runtime_error(std::string(argv[2]) + ": not a checkpoint");
  std::uint64_t length = 0;
  std::memcpy(&length, bytes.data() + kMagic, 8);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(kMagic + 8, length));
  std::string tensors = bytes.substr(kMagic + 8 + length, bytes.size() - 4 - (kMagic + 8 + length));
  bool wrong_crc = false;
  std::string length_arg;
  for (int i = 4; i < argc; ++i) {
    const std::string opt = argv[i];
    if (opt == "--header-patch" && i + 1 < argc) {
      header = patched(header, argv[++i]);
    } else if (opt == "--float" && i + 2 < argc) {
      const std::size_t index = std::stoull(argv[i + 1]);
      const float value = std::stof(argv[i + 2]);
      if ((index + 1) * sizeof value > tensors.size()) throw std::runtime_error("--float: index beyond the tensors");
      std::memcpy(&tensors[index * sizeof value], &value, sizeof value);
      i += 2;
    } else if (opt == "--tensor-bytes" && i + 1 < argc) {
      const long long n = std::stoll(argv[++i]);
      if (n >= 0)
        tensors.append(static_cast<std::size_t>(n), '\0');
      else
        tensors.resize(tensors.size() - static_cast<std::size_t>(-n));
    } else if (opt == "--length" && i + 1 < argc) {
      length_arg = argv[++i];
    } else if (opt == "--crc" && i + 1 < argc && std::string(argv[i + 1]) == "wrong") {
      wrong_crc = true;
      ++i;
    } else {
      throw std::runtime_error("unknown option " + opt);
    }
  }
  const std::string text = header.dump();
  std::uint64_t new_length = text.size();
  if (!length_arg.empty()) {
    const long long n = std::stoll(length_arg);
    new_length = length_arg[0] == '+' || length_arg[0] == '-' ? static_cast<std::uint64_t>(
                                                                    static_cast<long long>(text.size()) + n)
                                                              : static_cast<std::uint64_t>(n);
  }
  std::string out = bytes.substr(0, kMagic);
  out.append(reinterpret_cast<const char*>(&new_length), 8);
  out += text;
  out += tensors;
  std::uint32_t crc = static_cast<std::uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(out.data()), static_cast<uInt>(out.size())));
  if (wrong_crc) crc += 1;
  out.append(reinterpret_cast<const char*>(&crc), 4);
  write_file(argv[3], out);
  return 0;
}

int run(char** argv) {
  const double seconds = std::stod(argv[2]);
  const std::string rss_file = argv[3];
  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    ::setpgid(0, 0);
    const rlim_t bytes = rlim_t{1} << 30;
    const rlimit limit{bytes, bytes};
    ::setrlimit(RLIMIT_AS, &limit);
    ::execvp(argv[4], argv + 4);
    std::perror(argv[4]);
    ::_exit(127);
  }
  ::setpgid(child, child);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  rusage usage{};
  bool timed_out = false;
  for (;;) {
    const pid_t done = ::wait4(child, &status, WNOHANG, &usage);
    if (done == child) break;
    if (done < 0) throw std::runtime_error("wait4 failed");
    if (!timed_out && std::chrono::steady_clock::now() > deadline) {
      ::kill(-child, SIGKILL);
      timed_out = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(-child, SIGKILL);  // workers it left behind
  write_file(rss_file, std::to_string(usage.ru_maxrss) + "\n");
  if (timed_out) return 124;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "json-patch" && argc == 5) return json_patch(argv[2], argv[3], argv[4]);
    if (cmd == "checkpoint" && argc >= 4) return checkpoint(argc, argv);
    if (cmd == "run" && argc >= 5) return run(argv);
    std::cerr << "usage: qathw-corpus-tool json-patch IN PATCH OUT | checkpoint IN OUT [options] |"
                 " run SECONDS RSS_FILE COMMAND [ARGS...]\n";
    return 64;
  } catch (const std::exception& e) {
    std::cerr << "qathw-corpus-tool: " << e.what() << "\n";
    return 65;
  }
}
