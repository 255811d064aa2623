// Package user is user-service's domain: accounts with hashed passwords, the
// signing keys of access tokens, login, and who may read which user.
package user

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/crypto/bcrypt"

	"github.com/junction-go/junction/api/services"
	"github.com/junction-go/junction/auth"
	"github.com/junction-go/junction/fault"
)

// User is an account.
type User struct {
	ID           int64
	Username     string
	DisplayName  string
	Role         string
	PasswordHash []byte
	CreatedAt    time.Time
}

// Store keeps users and signing keys. Lookups of missing rows return an
// error of kind fault.NotFound; a username taken already, fault.Conflict.
type Store interface {
	UserByName(ctx context.Context, username string) (User, error)
	UserByID(ctx context.Context, id int64) (User, error)
	CreateUser(ctx context.Context, u User) (User, error)
	// SigningKeys returns the keys, oldest first.
	SigningKeys(ctx context.Context) ([]SigningKey, error)
	AddSigningKey(ctx context.Context, k SigningKey) error
	// Rotate adds k and has every other key that stays retire at retire,
	// in one transaction.
	Rotate(ctx context.Context, k SigningKey, retire time.Time) error
	RefreshStore
}

// Service is user-service's use cases. It is safe for concurrent use once
// Start has returned.
type Service struct {
	store Store
	ttl   time.Duration
	now   func() time.Time
	mu    sync.RWMutex
	keys  []SigningKey
	// dummyHash is compared against when a username is unknown, so a login
	// takes as long for a missing user as for a wrong password.
	dummyHash []byte
	// accounts and addresses count failed logins (throttle.go).
	accounts, addresses *throttle
}

// TokenScope is what the shop's access tokens say: the issuer and roles
// of auth.DefaultScope, and for audience the services that take them
// (services.TokenAudiences).
func TokenScope() auth.Scope {
	s := auth.DefaultScope
	s.Audiences = services.TokenAudiences()
	return s
}

// VerifierScope is what service's verifier requires: the shop's issuer
// and roles, and its own name as the audience.
func VerifierScope(service string) auth.Scope {
	s := auth.DefaultScope
	s.Audience = service
	return s
}

// NewService returns the service over store; tokens live ttl
// (auth.TokenExpiry when 0).
func NewService(store Store, ttl time.Duration, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, ttl: ttl, now: now, accounts: newThrottle(accountFree, now), addresses: newThrottle(addressFree, now)}
}

// Start loads the signing keys, making the first one when there is none
// (active at once). Several instances starting at once may each make one;
// all of them are published, and every instance signs with the newest
// (keys.go).
func (s *Service) Start(ctx context.Context) error {
	if err := s.Reload(ctx); err != nil {
		return err
	}
	s.mu.RLock()
	none := len(s.keys) == 0
	s.mu.RUnlock()
	if none {
		k, err := auth.NewKey()
		if err != nil {
			return err
		}
		now := s.now().UTC().Truncate(time.Millisecond)
		if err := s.store.AddSigningKey(ctx, SigningKey{Key: k, Created: now, Activates: now}); err != nil {
			return fmt.Errorf("add signing key: %w", err)
		}
		if err := s.Reload(ctx); err != nil {
			return err
		}
	}
	var err error
	s.dummyHash, err = bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)
	return err
}

// Token is an issued access token.
type Token struct {
	AccessToken string
	ExpiresIn   time.Duration
	// RefreshToken trades for the next access token (refresh.go).
	RefreshToken string
}

// Login checks a username and password and issues an access token. A wrong
// username or password is fault.Unauthorized, with the same message for
// both.
func (s *Service) Login(ctx context.Context, username, password, from string) (Token, error) {
	if username == "" || password == "" {
		return Token{}, fault.New(fault.Invalid, "username and password are required")
	}
	if len(username) > 64 || len(password) > 72 {
		return Token{}, fault.New(fault.Unauthorized, "wrong username or password")
	}
	account := strings.ToLower(username)
	if d := max(s.accounts.wait(account), s.addresses.wait(from)); d > 0 {
		return Token{}, &TooManyLogins{Wait: d}
	}
	u, err := s.store.UserByName(ctx, username)
	if err != nil && !fault.Is(err, fault.NotFound) {
		return Token{}, fmt.Errorf("login: %w", err)
	}
	hash := u.PasswordHash
	if err != nil {
		hash = s.dummyHash
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || u.ID == 0 {
		s.accounts.failed(account)
		s.addresses.failed(from)
		return Token{}, fault.New(fault.Unauthorized, "wrong username or password")
	}
	s.accounts.succeeded(account)
	tok, err := s.issue(u)
	if err != nil {
		return Token{}, fmt.Errorf("login: %w", err)
	}
	text, r, err := s.newRefresh("", u.ID)
	if err == nil {
		err = s.store.AddRefresh(ctx, r)
	}
	if err != nil {
		return Token{}, fmt.Errorf("login: %w", err)
	}
	tok.RefreshToken = text
	return tok, nil
}

// TooManyLogins refuses a login attempt during the back-off that failed
// logins of its account or address started (throttle.go); Wait is how long
// is left. It is a fault.RateLimited.
type TooManyLogins struct{ Wait time.Duration }

func (e *TooManyLogins) Error() string {
	return fmt.Sprintf("too many failed logins; try again in %d s", int(math.Ceil(e.Wait.Seconds())))
}

// Unwrap classifies it.
func (e *TooManyLogins) Unwrap() error { return fault.New(fault.RateLimited, "%s", e.Error()) }

// GetUser returns user id to caller. A customer may read only themselves;
// any other id is fault.NotFound, so customers cannot probe for accounts.
func (s *Service) GetUser(ctx context.Context, caller auth.Principal, id int64) (User, error) {
	if id < 1 {
		return User{}, fault.New(fault.Invalid, "user id must be a positive integer")
	}
	if !caller.IsAdmin() && caller.UserID != id {
		return User{}, fault.New(fault.NotFound, "no user %d", id)
	}
	u, err := s.store.UserByID(ctx, id)
	if err != nil {
		return User{}, fmt.Errorf("get user %d: %w", id, err)
	}
	return u, nil
}

// JWKS returns the public keys that are published now: the active ones,
// the ones about to sign, and the retiring ones until their last token
// expires.
func (s *Service) JWKS() auth.JWKS {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	set := auth.JWKS{Keys: make([]auth.JWK, 0, len(s.keys))}
	for _, k := range s.keys {
		if k.published(now) {
			set.Keys = append(set.Keys, auth.PublicJWK(k.Key))
		}
	}
	return set
}

// NewUser is what creating an account takes.
type NewUser struct {
	Username, DisplayName, Password, Role string
}

// Config is user-service's own settings.
type Config struct {
	// TokenTTL is the lifetime of the access tokens it issues.
	TokenTTL time.Duration
	// DemoPassword is the password of the demo accounts (DemoAccounts),
	// when they are made.
	DemoPassword string
}

// DefaultConfig issues tokens for auth.TokenExpiry and seeds nothing.
var DefaultConfig = Config{TokenTTL: auth.TokenExpiry, DemoPassword: "junction"}

// Validate reports the first setting c cannot use; the error begins with
// the setting's name (token-ttl, demo-password).
func (c Config) Validate() error {
	if c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour {
		return fmt.Errorf("token-ttl %v: must be between 1m and 24h", c.TokenTTL)
	}
	if n := len(c.DemoPassword); n < 8 || n > 72 {
		return fmt.Errorf("demo-password: must be 8 to 72 bytes")
	}
	return nil
}

// String prints c for the start-up log, without the password.
func (c Config) String() string {
	return fmt.Sprintf("token_ttl=%v", c.TokenTTL)
}

// DemoAccounts are the accounts `junction up` starts with: alice and bob
// (customers) and admin (administrator), all with password.
func DemoAccounts(password string) []NewUser {
	return []NewUser{
		{Username: "alice", DisplayName: "Alice", Password: password, Role: auth.RoleCustomer},
		{Username: "bob", DisplayName: "Bob", Password: password, Role: auth.RoleCustomer},
		{Username: "admin", DisplayName: "Administrator", Password: password, Role: auth.RoleAdmin},
	}
}

// CreateUser makes an account. Bad input is fault.Invalid; a taken username
// fault.Conflict.
func (s *Service) CreateUser(ctx context.Context, n NewUser) (User, error) {
	if err := validUsername(n.Username); err != nil {
		return User{}, err
	}
	if len(n.Password) < 8 || len(n.Password) > 72 {
		return User{}, fault.New(fault.Invalid, "password must be 8 to 72 bytes")
	}
	if n.Role != auth.RoleCustomer && n.Role != auth.RoleAdmin {
		return User{}, fault.New(fault.Invalid, "role must be %q or %q", auth.RoleCustomer, auth.RoleAdmin)
	}
	if n.DisplayName == "" {
		n.DisplayName = n.Username
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(n.Password), bcrypt.DefaultCost)
	if err != nil {
		return User{}, fmt.Errorf("hash password: %w", err)
	}
	u, err := s.store.CreateUser(ctx, User{Username: n.Username, DisplayName: n.DisplayName, Role: n.Role, PasswordHash: hash, CreatedAt: s.now().UTC()})
	if err != nil {
		return User{}, fmt.Errorf("create user %q: %w", n.Username, err)
	}
	return u, nil
}

// EnsureUser creates n unless its username exists already; it reports
// whether it created it.
func (s *Service) EnsureUser(ctx context.Context, n NewUser) (bool, error) {
	_, err := s.store.UserByName(ctx, n.Username)
	if err == nil {
		return false, nil
	}
	if !fault.Is(err, fault.NotFound) {
		return false, err
	}
	if _, err := s.CreateUser(ctx, n); err != nil {
		if fault.Is(err, fault.Conflict) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

func validUsername(name string) error {
	if len(name) < 1 || len(name) > 64 {
		return fault.New(fault.Invalid, "username must be 1 to 64 characters")
	}
	for _, r := range name {
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._-", r)) {
			return fault.New(fault.Invalid, "username may hold only letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}
