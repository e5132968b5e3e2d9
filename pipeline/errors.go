package pipeline

import "time"

// apiError is an error answer of the gateway in the OpenAI error shape
// (DESIGN §5).
type apiError struct {
	Status  int
	Type    string
	Code    string
	Param   string
	Message string
	// RetryAfter, when set, is sent as Retry-After: waiting would help.
	RetryAfter time.Duration
	// Retried says the gateway already retried and failed over; the answer
	// then carries x-should-retry: false so SDKs do not multiply the load.
	Retried bool
	// Reason is the short word logged with the rejection or give-up.
	Reason string
}

// OpenAI error types used by the gateway's own answers.
const (
	typeInvalidRequest = "invalid_request_error"
	typeAuthentication = "authentication_error"
	typeRateLimit      = "rate_limit_error"
	typeServer         = "server_error"
	typeTimeout        = "timeout_error"
)

func invalid(param, msg string) *apiError {
	return &apiError{Status: 400, Type: typeInvalidRequest, Param: param, Message: msg, Reason: "invalid_request"}
}
