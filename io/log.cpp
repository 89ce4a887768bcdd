// spdlog is used header-only here (and only here), so the binaries need no spdlog or fmt library
// at run time (the lent GPU machines have neither).
#include "io/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "io/error.h"

namespace fi {

namespace {

// "warning: ", "error: ", "debug: " before the message; nothing for info.
class LevelPrefix : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& message, const std::tm&, spdlog::memory_buf_t& out) override {
    const char* prefix = "";
    if (message.level == spdlog::level::warn) prefix = "warning: ";
    else if (message.level >= spdlog::level::err) prefix = "error: ";
    else if (message.level <= spdlog::level::debug) prefix = "debug: ";
    out.append(prefix, prefix + std::strlen(prefix));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<LevelPrefix>(); }
};

std::unique_ptr<spdlog::formatter> formatter(const char* pattern) {
  auto made = std::make_unique<spdlog::pattern_formatter>();
  made->add_flag<LevelPrefix>('*').set_pattern(pattern);
  return made;
}

spdlog::level::level_enum to_spdlog(LogLevel level) {
  switch (level) {
    case LogLevel::Debug: return spdlog::level::debug;
    case LogLevel::Info: return spdlog::level::info;
    case LogLevel::Warning: return spdlog::level::warn;
    case LogLevel::Error: return spdlog::level::err;
    case LogLevel::Off: return spdlog::level::off;
  }
  return spdlog::level::info;
}

struct Logging {
  std::shared_ptr<spdlog::sinks::stderr_sink_mt> terminal = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  std::shared_ptr<spdlog::sinks::basic_file_sink_mt> file;
  std::shared_ptr<spdlog::logger> logger;
  std::mutex mutex;  // guards reconfiguration
  std::atomic<bool> progress_shown{false};

  Logging() {
    terminal->set_formatter(formatter("flexinfer: %*%v"));
    logger = std::make_shared<spdlog::logger>("flexinfer", terminal);
    logger->set_level(spdlog::level::info);
    logger->flush_on(spdlog::level::trace);
  }
};

Logging& logging() {
  static Logging instance;
  return instance;
}

void emit(spdlog::level::level_enum level, const char* format, va_list arguments) {
  Logging& state = logging();
  if (!state.logger->should_log(level)) return;
  std::string text;
  va_list copy;
  va_copy(copy, arguments);
  const int length = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (length < 0) return;
  text.resize(static_cast<size_t>(length) + 1);
  std::vsnprintf(text.data(), text.size(), format, arguments);
  text.pop_back();
  end_progress();
  state.logger->log(level, text);
}

}  // namespace

void log_debug(const char* format, ...) {
  va_list arguments;
  va_start(arguments, format);
  emit(spdlog::level::debug, format, arguments);
  va_end(arguments);
}

void log_info(const char* format, ...) {
  va_list arguments;
  va_start(arguments, format);
  emit(spdlog::level::info, format, arguments);
  va_end(arguments);
}

void log_warning(const char* format, ...) {
  va_list arguments;
  va_start(arguments, format);
  emit(spdlog::level::warn, format, arguments);
  va_end(arguments);
}

bool log_enabled(LogLevel level) { return logging().logger->should_log(to_spdlog(level)); }

void configure_logging(LogLevel level, const std::string& file) {
  Logging& state = logging();
  const std::lock_guard<std::mutex> lock(state.mutex);
  std::vector<spdlog::sink_ptr> sinks = {state.terminal};
  if (!file.empty()) {
    try {
      state.file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file);
    } catch (const spdlog::spdlog_ex& error) {
      fail("--log-file: cannot open '%s' (%s)", file.c_str(), error.what());
    }
    state.file->set_formatter(formatter("%Y-%m-%d %H:%M:%S.%e [%P] %*%v"));
    sinks.push_back(state.file);
  }
  auto logger = std::make_shared<spdlog::logger>("flexinfer", sinks.begin(), sinks.end());
  logger->set_level(to_spdlog(level));
  logger->flush_on(spdlog::level::trace);
  state.logger = logger;
}

std::optional<LogLevel> parse_log_level(std::string_view name) {
  if (name == "debug") return LogLevel::Debug;
  if (name == "info") return LogLevel::Info;
  if (name == "warning" || name == "warn") return LogLevel::Warning;
  if (name == "error") return LogLevel::Error;
  if (name == "off") return LogLevel::Off;
  return std::nullopt;
}

void report_error(const std::string& message) {
  Logging& state = logging();
  end_progress();
  std::fprintf(stderr, "flexinfer: error: %s\n", message.c_str());
  if (state.file) {
    state.file->log(spdlog::details::log_msg("flexinfer", spdlog::level::err, message));
    state.file->flush();
  }
}

void log_progress(const std::string& text) {
  if (!::isatty(STDERR_FILENO) || !log_enabled(LogLevel::Info)) return;
  logging().progress_shown = true;
  std::fprintf(stderr, "\rflexinfer: %s\033[K", text.c_str());
  std::fflush(stderr);
}

void end_progress() {
  if (!logging().progress_shown.exchange(false)) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

}  // namespace fi
