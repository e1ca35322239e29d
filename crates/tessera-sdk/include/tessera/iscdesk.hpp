// libtessera's ISCDesk facade: a header-only C++ wrapper with the call names, event names and
// event payloads of Huawei's ISCDesk SDK, so an application written for ISCDesk moves to Tessera
// by changing its include (`#include <tessera/iscdesk.hpp>`) and its link line (`-ltessera`).
//
//   tessera::iscdesk::SdkInvoker invoker;          // product from TESSERA_ISCDESK_PRODUCT_ID
//   if (invoker.IscdeskFactory()->Init() != tessera::iscdesk::RESULT_SUCCESS) return 1;
//   invoker->RegisterEventRecall(&app, &App::EventRecall);
//   invoker->GetLicenseStringRequest("");
//   ...
//   invoker->ShutOut();
//
// Differences from ISCDesk, on purpose:
//  - The product id is needed: pass it to the constructor, or compile with
//    -DTESSERA_ISCDESK_PRODUCT_ID="\"foocad\"", or set TESSERA_PRODUCT_ID in the environment.
//  - ShutOut inside the callback is refused (returns TESSERA_CALLED_FROM_CALLBACK) instead of
//    deadlocking; ShutOut twice is harmless, and the destructor calls it.
//  - Every call returns a ResultStatus (= tessera_result): RESULT_SUCCESS or a numbered code.
//  - Exceptions thrown by the callback are caught and dropped at the C boundary.
#ifndef TESSERA_ISCDESK_HPP
#define TESSERA_ISCDESK_HPP

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "../tessera.h"

namespace tessera {
namespace iscdesk {

using ResultStatus = tessera_result;
constexpr ResultStatus RESULT_SUCCESS = TESSERA_OK;

// ISCDesk's event constants (the numbers are Tessera's; the payloads are ISCDesk's JSON:
// {"operate":"…","params":{…},"comeBackParams":{…}}).
enum EventType : std::uint32_t {
  EVENT_LICENSE_VERIFY = TESSERA_EVENT_LICENSE_VERIFY,
  EVENT_UPGRADENOTICE = TESSERA_EVENT_UPGRADENOTICE,
  EVENT_UPDATE = TESSERA_EVENT_UPDATE,
  EVENT_LICENSE_STATE = TESSERA_EVENT_LICENSE_STATE,
  EVENT_HEARTBEAT_REPLY = TESSERA_EVENT_HEARTBEAT_REPLY,
  EVENT_AGENT_CLOSING = TESSERA_EVENT_AGENT_CLOSING,
};

enum class LicenseType : std::uint32_t {
  LICENSE_TYPE_FILE = TESSERA_LICENSE_FILE,
  LICENSE_TYPE_STRING = TESSERA_LICENSE_STRING,
};

// The value of `key` in an event payload, e.g. JsonParam(info, "fromForceWin") == "true".
// Strings come unescaped; other values as their JSON text; "" when absent. Enough for ISCDesk's
// flat params; use a JSON library for anything deeper.
inline std::string JsonParam(const std::string &json, const std::string &key) {
  const std::string needle = "\"" + key + "\"";
  std::string::size_type at = json.find(needle);
  while (at != std::string::npos) {
    std::string::size_type i = at + needle.size();
    while (i < json.size() && (json[i] == ' ' || json[i] == '\t')) ++i;
    if (i < json.size() && json[i] == ':') {
      ++i;
      while (i < json.size() && (json[i] == ' ' || json[i] == '\t')) ++i;
      std::string value;
      if (i < json.size() && json[i] == '"') {
        for (++i; i < json.size() && json[i] != '"'; ++i) {
          if (json[i] == '\\' && i + 1 < json.size()) {
            ++i;
            switch (json[i]) {
              case 'n': value += '\n'; break;
              case 't': value += '\t'; break;
              case 'r': value += '\r'; break;
              default: value += json[i]; break;
            }
          } else {
            value += json[i];
          }
        }
        return value;
      }
      while (i < json.size() && json[i] != ',' && json[i] != '}' && json[i] != ' ') value += json[i++];
      return value;
    }
    at = json.find(needle, at + 1);
  }
  return std::string();
}

class Sdk {
 public:
  using EventRecall = std::function<void(EventType, const std::string &)>;

  // `product_id` empty: TESSERA_ISCDESK_PRODUCT_ID if defined, else TESSERA_PRODUCT_ID at Init.
  explicit Sdk(std::string product_id = std::string(), std::string app_name = "iscdesk-app",
               std::string app_version = "0")
      : product_id_(std::move(product_id)),
        app_name_(std::move(app_name)),
        app_version_(std::move(app_version)) {}
  ~Sdk() { ShutOut(); }
  Sdk(const Sdk &) = delete;
  Sdk &operator=(const Sdk &) = delete;
  Sdk(Sdk &&other) noexcept
      : client_(std::exchange(other.client_, nullptr)),
        product_id_(std::move(other.product_id_)),
        app_name_(std::move(other.app_name_)),
        app_version_(std::move(other.app_version_)) {}

  // Must be the first call: creates the client and connects to the agent (waiting up to
  // `timeout_ms`; the client keeps retrying in the background either way).
  ResultStatus Init(std::uint32_t timeout_ms = 5000) {
    if (client_ == nullptr) {
      std::string product = product_id_;
#ifdef TESSERA_ISCDESK_PRODUCT_ID
      if (product.empty()) product = TESSERA_ISCDESK_PRODUCT_ID;
#endif
      if (product.empty()) {
        const char *env = std::getenv("TESSERA_PRODUCT_ID");
        if (env != nullptr) product = env;
      }
      if (product.empty()) return TESSERA_INVALID_PARAMETER;
      ResultStatus r =
          tessera_client_new(product.c_str(), app_name_.c_str(), app_version_.c_str(), &client_);
      if (r != TESSERA_OK) return r;
    }
    return tessera_client_connect(client_, timeout_ms);
  }

  // ISCDesk's form: a member function of an object, called with (event type, payload JSON).
  template <class T>
  ResultStatus RegisterEventRecall(T *object, void (T::*method)(EventType, const std::string &)) {
    return RegisterEventRecall(
        EventRecall([object, method](EventType type, const std::string &info) {
          (object->*method)(type, info);
        }));
  }

  // Any callable. Runs on the SDK's events thread; must not call ShutOut.
  ResultStatus RegisterEventRecall(EventRecall recall) {
    if (client_ == nullptr) return TESSERA_NOT_CONNECTED;
    if (!recall) return tessera_client_set_event_callback(client_, nullptr, nullptr, nullptr);
    auto *owned = new EventRecall(std::move(recall));
    ResultStatus r = tessera_client_set_event_callback(client_, &Sdk::Trampoline, owned, &Sdk::Release);
    if (r != TESSERA_OK) delete owned;
    return r;
  }

  // Disconnects and frees everything. Harmless when called again; refused inside the callback.
  ResultStatus ShutOut() {
    if (client_ == nullptr) return TESSERA_OK;
    ResultStatus r = tessera_client_free(client_);
    if (r == TESSERA_OK) client_ = nullptr;
    return r;
  }

  ResultStatus GetLicenseStringRequest(const std::string &dev_info = std::string()) {
    if (client_ == nullptr) return TESSERA_NOT_CONNECTED;
    return tessera_client_request_license(client_, TESSERA_LICENSE_STRING, nullptr, dev_info.c_str());
  }

  ResultStatus GetLicenseFileRequest(const std::string &file_name,
                                     const std::string &dev_info = std::string()) {
    if (client_ == nullptr) return TESSERA_NOT_CONNECTED;
    return tessera_client_request_license(client_, TESSERA_LICENSE_FILE,
                                          file_name.empty() ? nullptr : file_name.c_str(),
                                          dev_info.c_str());
  }

  ResultStatus LicenseVerifyNotify(bool verify_result, const std::string &error_msg = std::string()) {
    if (client_ == nullptr) return TESSERA_NOT_CONNECTED;
    return tessera_client_verify_notify(client_, verify_result, error_msg.c_str());
  }

  ResultStatus TrialExpirationAndGetLicense(LicenseType type,
                                            const std::string &dev_info = std::string(),
                                            const std::string &file_name = std::string()) {
    if (client_ == nullptr) return TESSERA_NOT_CONNECTED;
    return tessera_client_trial_expired(client_, static_cast<tessera_license_kind>(type),
                                        dev_info.c_str(),
                                        file_name.empty() ? nullptr : file_name.c_str());
  }

  ResultStatus CheckNewVersions() {
    if (client_ == nullptr) return TESSERA_NOT_CONNECTED;
    return tessera_client_check_new_versions(client_);
  }

  ResultStatus UpgradeNotify(bool b_upgrade) {
    if (client_ == nullptr) return TESSERA_NOT_CONNECTED;
    return tessera_client_upgrade_notify(client_, b_upgrade);
  }

  // Tessera additions: the hot-path feature check and seats.
  ResultStatus Check(const char *feature) const {
    if (client_ == nullptr) return TESSERA_NOT_CONNECTED;
    return tessera_client_check(client_, feature);
  }

  ResultStatus Checkout(const char *feature, tessera_lease *lease) {
    if (client_ == nullptr) return TESSERA_NOT_CONNECTED;
    return tessera_client_checkout(client_, feature, lease);
  }

  ResultStatus Release(tessera_lease lease) {
    if (client_ == nullptr) return TESSERA_NOT_CONNECTED;
    return tessera_client_release(client_, lease);
  }

  std::string LastError() const {
    if (client_ == nullptr) return std::string();
    size_t needed = 0;
    if (tessera_client_last_error(client_, nullptr, 0, &needed) != TESSERA_INSUFFICIENT_SIZE) {
      return std::string();
    }
    std::string text(needed, '\0');
    size_t written = 0;
    if (tessera_client_last_error(client_, &text[0], text.size(), &written) != TESSERA_OK) {
      return std::string();
    }
    text.resize(written);
    return text;
  }

  // The underlying C handle (owned by this object), or nullptr before Init / after ShutOut.
  tessera_client *Handle() const { return client_; }

 private:
  static void Trampoline(void *userdata, tessera_event_kind kind, const char *json) {
    try {
      (*static_cast<EventRecall *>(userdata))(static_cast<EventType>(kind),
                                              std::string(json != nullptr ? json : ""));
    } catch (...) {
      // An exception must not unwind into libtessera; ISCDesk gives the callback no way to
      // report one either.
    }
  }
  static void Release(void *userdata) { delete static_cast<EventRecall *>(userdata); }

  tessera_client *client_ = nullptr;
  std::string product_id_;
  std::string app_name_;
  std::string app_version_;
};

// ISCDesk's entry object: `invoker.IscdeskFactory()->Init()`, then `invoker->Call(...)`.
class SdkInvoker {
 public:
  explicit SdkInvoker(std::string product_id = std::string(), std::string app_name = "iscdesk-app",
                      std::string app_version = "0")
      : sdk_(std::move(product_id), std::move(app_name), std::move(app_version)) {}
  Sdk *IscdeskFactory() { return &sdk_; }
  Sdk *operator->() { return &sdk_; }

 private:
  Sdk sdk_;
};

}  // namespace iscdesk
}  // namespace tessera

#endif  // TESSERA_ISCDESK_HPP
