// The C++ ISCDesk facade, used the way an ISCDesk application uses ISCDesk's SDK: Init first,
// RegisterEventRecall with a member function, the License and upgrade calls answered by events,
// ShutOut refused inside the callback, and ShutOut twice (a double free in C) harmless.
#include <tessera/iscdesk.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#define EXPECT(cond)                                                                  \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: expectation failed: %s\n", __FILE__, __LINE__, #cond); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)

using namespace tessera::iscdesk;

template <class F>
static void WaitUntil(F cond) {
  for (int i = 0; i < 2000 && !cond(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT(cond());
}

class App {
 public:
  explicit App(SdkInvoker *invoker) : invoker_(invoker) {}
  void EventRecall(EventType type, const std::string &info) {
    if (type == EVENT_LICENSE_VERIFY) {
      license_type = JsonParam(info, "LicenseType");
      license = JsonParam(info, "LicenseContent");
      status = JsonParam(info, "Status");
    } else if (type == EVENT_UPGRADENOTICE) {
      available = JsonParam(info, "available") == "true";
      shutout_refused = (*invoker_)->ShutOut() == TESSERA_CALLED_FROM_CALLBACK;
      throw std::runtime_error("exceptions stay on this side of the boundary");
    }
    events++;
  }
  SdkInvoker *invoker_;
  std::atomic<int> events{0};
  std::string license_type, license, status;
  std::atomic<bool> available{false};
  std::atomic<bool> shutout_refused{false};
};

int main() {
  EXPECT(JsonParam(R"({"operate":"Update","params":{"fromForceWin":"true"}})", "fromForceWin") == "true");
  EXPECT(JsonParam(R"({"params":{"available":false}})", "available") == "false");
  EXPECT(JsonParam(R"({"params":{"p":"a\"b"}})", "p") == "a\"b");
  EXPECT(JsonParam("{}", "missing").empty());

  {
    SdkInvoker unnamed("", "cpp-test", "1.0");
    // No product anywhere: Init says so instead of guessing.
    if (std::getenv("TESSERA_PRODUCT_ID") == nullptr) EXPECT(unnamed->Init(100) == TESSERA_INVALID_PARAMETER);
    EXPECT(unnamed->CheckNewVersions() == TESSERA_NOT_CONNECTED);
    EXPECT(unnamed->ShutOut() == RESULT_SUCCESS);
  }

  SdkInvoker invoker("foocad", "cpp-test", "1.0");
  App app(&invoker);
  EXPECT(invoker->GetLicenseStringRequest() == TESSERA_NOT_CONNECTED);  // before Init
  EXPECT(invoker.IscdeskFactory()->Init() == RESULT_SUCCESS);
  EXPECT(invoker->RegisterEventRecall(&app, &App::EventRecall) == RESULT_SUCCESS);
  EXPECT(invoker->Check("solver") == RESULT_SUCCESS);
  tessera_lease lease = 0;
  EXPECT(invoker->Checkout("solver", &lease) == RESULT_SUCCESS);
  EXPECT(invoker->Release(lease) == RESULT_SUCCESS);
  EXPECT(invoker->Checkout("nope", &lease) == TESSERA_FEATURE_NOT_LICENSED);
  EXPECT(!invoker->LastError().empty());

  EXPECT(invoker->GetLicenseStringRequest("") == RESULT_SUCCESS);
  WaitUntil([&] { return app.events.load() >= 1; });
  EXPECT(app.license_type == "string" && app.status == "success");
  // The License string the real agent holds (the harness imported it and passes it here).
  const char *imported = std::getenv("TESSERA_TEST_LICENSE");
  EXPECT(imported != nullptr && app.license == imported);
  EXPECT(invoker->LicenseVerifyNotify(true, "") == RESULT_SUCCESS);
  EXPECT(invoker->GetLicenseFileRequest("foo.lic", "") == RESULT_SUCCESS);
  EXPECT(invoker->TrialExpirationAndGetLicense(LicenseType::LICENSE_TYPE_FILE, "", "foo.lic") == RESULT_SUCCESS);
  EXPECT(invoker->CheckNewVersions() == RESULT_SUCCESS);
  WaitUntil([&] { return app.available.load(); });
  EXPECT(app.shutout_refused.load());
  EXPECT(invoker->UpgradeNotify(false) == RESULT_SUCCESS);

  EXPECT(invoker->ShutOut() == RESULT_SUCCESS);
  EXPECT(invoker->ShutOut() == RESULT_SUCCESS);  // double ShutOut: no double free
  EXPECT(invoker->Handle() == nullptr);
  EXPECT(invoker->CheckNewVersions() == TESSERA_NOT_CONNECTED);
  std::printf("iscdesk: all expectations hold\n");
  return 0;  // ~SdkInvoker runs ShutOut a third time
}
