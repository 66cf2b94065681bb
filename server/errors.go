package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error types, as in OpenAI's error responses.
const (
	errInvalidRequest = "invalid_request_error"
	errAuthentication = "authentication_error"
	errNotFound       = "not_found_error"
	errServer         = "server_error"
	errOverloaded     = "server_overloaded"
)

// APIError is an error with an HTTP status and an OpenAI-style body:
//
//	{"error": {"message": "...", "type": "invalid_request_error", "param": "temperature", "code": null}}
type APIError struct {
	Status  int    // HTTP status
	Message string // human-readable explanation
	Type    string // invalid_request_error, authentication_error, not_found_error, server_overloaded, server_error
	Param   string // request field at fault ("" when none)
	Code    string // machine-readable code ("" when none)
}

func (e *APIError) Error() string {
	if e.Param != "" {
		return fmt.Sprintf("%s (%s): %s", e.Type, e.Param, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Type, e.Message)
}

// invalid returns a 400 invalid_request_error about param.
func invalid(param, format string, args ...any) *APIError {
	return &APIError{Status: http.StatusBadRequest, Type: errInvalidRequest, Param: param, Message: fmt.Sprintf(format, args...)}
}

// errorBody is the wire form of an APIError.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// asAPIError converts any error into an APIError (500 server_error unless
// err already is, or wraps, an APIError).
func asAPIError(err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &APIError{Status: http.StatusRequestEntityTooLarge, Type: errInvalidRequest, Code: "request_too_large",
			Message: fmt.Sprintf("request body is larger than the limit of %d bytes", mbe.Limit)}
	}
	return &APIError{Status: http.StatusInternalServerError, Type: errServer, Message: err.Error()}
}

func (e *APIError) body() errorBody {
	return errorBody{Error: errorDetail{Message: e.Message, Type: e.Type, Param: optString(e.Param), Code: optString(e.Code)}}
}

// writeError sends err as an OpenAI-style error response.
func writeError(w http.ResponseWriter, err error) {
	ae := asAPIError(err)
	if ae.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, ae.Status, ae.body())
}

// writeJSON sends v as a JSON response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: errorDetail{Message: "encoding the response: " + err.Error(), Type: errServer}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// marshal encodes v as JSON without HTML escaping (as OpenAI does).
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil // Encode ends with a newline
}
