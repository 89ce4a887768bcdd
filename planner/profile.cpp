#include "planner/profile.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/async_reader.h"
#include "io/error.h"

namespace fi {

std::string Profile::to_json() const {
  nlohmann::json points = nlohmann::json::array();
  for (const DiskPoint& p : disk_points)
    points.push_back({{"queue_depth", p.queue_depth}, {"request_bytes", p.request_bytes}, {"GBps", p.GBps}});
  const nlohmann::json json = {{"machine", machine},
                               {"disk_read_GBps", disk_read_GBps},
                               {"disk_queue_depth", disk_queue_depth},
                               {"disk_request_bytes", disk_request_bytes},
                               {"disk_points", points},
                               {"host_read_GBps", host_read_GBps},
                               {"cpu_matvec_GBps", cpu_matvec_GBps},
                               {"cpu_matvec_GBps_by_type", cpu_matvec_GBps_by_type},
                               {"cpu_threads", cpu_threads},
                               {"gpu", gpu},
                               {"h2d_pinned_GBps", h2d_pinned_GBps},
                               {"h2d_pageable_GBps", h2d_pageable_GBps},
                               {"d2h_GBps", d2h_GBps},
                               {"vram_read_GBps", vram_read_GBps},
                               {"gpu_matvec_GBps", gpu_matvec_GBps}};
  return json.dump(2) + "\n";
}

Profile Profile::from_json(const std::string& text, const std::string& origin) {
  Profile profile;
  try {
    const nlohmann::json json = nlohmann::json::parse(text);
    auto number = [&](const char* key, double fallback) {
      if (!json.contains(key)) return fallback;
      const double value = json.at(key).get<double>();
      if (!(value >= 0.0 && value < 1e7)) fail("%s: '%s' = %g is not a plausible bandwidth", origin.c_str(), key, value);
      return value;
    };
    profile.machine = json.value("machine", "");
    profile.disk_read_GBps = number("disk_read_GBps", 0.0);
    profile.host_read_GBps = number("host_read_GBps", 0.0);
    profile.cpu_matvec_GBps = number("cpu_matvec_GBps", 0.0);
    if (json.contains("cpu_matvec_GBps_by_type")) {
      const nlohmann::json& rates = json.at("cpu_matvec_GBps_by_type");
      if (!rates.is_object() || rates.size() > 64) fail("%s: 'cpu_matvec_GBps_by_type' is not a table of rates", origin.c_str());
      for (const auto& [type, rate] : rates.items()) {
        const double value = rate.get<double>();
        if (!(value > 0.0 && value < 1e7))
          fail("%s: cpu_matvec_GBps_by_type '%s' = %g is not a plausible bandwidth", origin.c_str(), type.c_str(), value);
        profile.cpu_matvec_GBps_by_type[type] = value;
      }
    }
    profile.disk_queue_depth = static_cast<int>(number("disk_queue_depth", 32));
    profile.disk_request_bytes = static_cast<uint64_t>(number("disk_request_bytes", 1 << 20));
    profile.cpu_threads = static_cast<int>(number("cpu_threads", 0));
    profile.gpu = json.value("gpu", "");
    profile.h2d_pinned_GBps = number("h2d_pinned_GBps", 0.0);
    profile.h2d_pageable_GBps = number("h2d_pageable_GBps", 0.0);
    profile.d2h_GBps = number("d2h_GBps", 0.0);
    profile.vram_read_GBps = number("vram_read_GBps", 0.0);
    profile.gpu_matvec_GBps = number("gpu_matvec_GBps", 0.0);
    if (profile.disk_queue_depth < 1 || profile.disk_queue_depth > kMaxQueueDepth || profile.disk_request_bytes < 4096 ||
        profile.disk_request_bytes % 4096 || profile.disk_request_bytes > (64u << 20))
      fail("%s: disk_queue_depth or disk_request_bytes out of range", origin.c_str());
    if (json.contains("disk_points"))
      for (const auto& p : json.at("disk_points"))
        profile.disk_points.push_back({p.at("queue_depth").get<int>(), p.at("request_bytes").get<uint64_t>(),
                                       p.at("GBps").get<double>()});
  } catch (const nlohmann::json::exception& error) {
    fail("%s: not a valid profile: %s", origin.c_str(), error.what());
  }
  return profile;
}

double Profile::cpu_matvec_GBps_for(TensorType type) const {
  const auto found = cpu_matvec_GBps_by_type.find(type_name(type));
  return found != cpu_matvec_GBps_by_type.end() ? found->second : cpu_matvec_GBps;
}

Profile Profile::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("%s: cannot open: %s", path.c_str(), std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().size() > (1u << 20)) fail("%s: too large for a profile", path.c_str());
  return from_json(text.str(), path);
}

void Profile::save(const std::string& path) const {
  // Create the directories on the way.
  for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1))
    ::mkdir(path.substr(0, slash).c_str(), 0755);
  std::ofstream out(path);
  out << to_json();
  out.close();
  if (!out) fail("%s: cannot write the profile", path.c_str());
}

std::string default_profile_path() {
  const char* cache = std::getenv("XDG_CACHE_HOME");
  if (cache && *cache) return std::string(cache) + "/flexinfer/profile.json";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/flexinfer/profile.json";
}

std::optional<Profile> cached_profile() {
  const std::string path = default_profile_path();
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return std::nullopt;
  return Profile::load(path);
}

Prediction predict_decode(const Plan& plan, const Profile& profile, uint64_t compute_bytes) {
  Prediction prediction;
  if (profile.disk_read_GBps > 0)
    prediction.disk_seconds = static_cast<double>(plan.read_bytes_per_token() + plan.expert_cache.uniform_read_bytes_per_token()) /
                              (profile.disk_read_GBps * 1e9);
  const double compute_GBps = profile.cpu_matvec_GBps > 0 ? profile.cpu_matvec_GBps : profile.host_read_GBps;
  if (compute_GBps > 0) prediction.compute_seconds = static_cast<double>(compute_bytes) / (compute_GBps * 1e9);
  const double seconds = std::max(prediction.disk_seconds, prediction.compute_seconds);
  prediction.bound = prediction.disk_seconds > prediction.compute_seconds ? "disk" : "cpu";
  prediction.decode_tok_s = seconds > 0 ? 1.0 / seconds : 0.0;
  return prediction;
}

Profile nominal_profile() {
  Profile nominal;
  nominal.machine = kNominalProfile;
  nominal.disk_read_GBps = 2.0;
  nominal.host_read_GBps = 20.0;
  nominal.cpu_matvec_GBps = 10.0;
  nominal.h2d_pinned_GBps = 12.0;
  nominal.h2d_pageable_GBps = 6.0;
  nominal.d2h_GBps = 12.0;
  nominal.vram_read_GBps = 300.0;
  nominal.gpu_matvec_GBps = 250.0;
  return nominal;
}

}  // namespace fi
