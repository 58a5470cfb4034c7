package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// route is one entry of the route table: registered with echo and described
// in the OpenAPI document from the same data.
type route struct {
	method, path, summary string
	body                  string // request body kind: "", "json", "bytes"
	ok                    int    // success status
	handler               echo.HandlerFunc
}

const (
	v1   = "/api/v1"
	subP = v1 + "/subscriptions/:sub"
	acP  = subP + "/accounts/:acct"
	wsP  = acP + "/workspaces/:ws"
)

func (a *API) add(method, path, summary, body string, ok int, h echo.HandlerFunc) {
	a.routes = append(a.routes, route{method, path, summary, body, ok, h})
	a.echo.Add(method, path, h)
}

func (a *API) register() {
	s := a.svc
	a.add(http.MethodGet, "/healthz", "Liveness of the cloud", "", 200, func(c echo.Context) error {
		return c.JSON(200, map[string]string{"status": "ok"})
	})
	a.add(http.MethodGet, v1+"/openapi.json", "This API's OpenAPI 3 document", "", 200, func(c echo.Context) error {
		return c.JSON(200, a.openAPI())
	})
	a.add(http.MethodGet, v1+"/whoami", "The caller and their role assignments", "", 200, func(c echo.Context) error {
		u, g, err := s.Whoami(c.Request().Context())
		if err != nil {
			return err
		}
		return c.JSON(200, map[string]any{"user": u, "roleAssignments": g})
	})

	// Users and tokens.
	a.add(http.MethodPost, v1+"/users", "Create a user", "json", 201, func(c echo.Context) error {
		var in struct {
			Name  string `json:"name"`
			Email string `json:"email"`
			Admin bool   `json:"admin"`
		}
		if err := decode(c, &in); err != nil {
			return err
		}
		return answer(c, 201)(s.CreateUser(ctx(c), cloud.User{Name: in.Name, Email: in.Email, Admin: in.Admin}))
	})
	a.add(http.MethodGet, v1+"/users", "List users", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListUsers(ctx(c), o))
	})
	a.add(http.MethodGet, v1+"/users/:user", "Show a user", "", 200, func(c echo.Context) error {
		return answer(c, 200)(s.GetUser(ctx(c), c.Param("user")))
	})
	a.add(http.MethodDelete, v1+"/users/:user", "Delete a user, their tokens and role assignments", "", 204, func(c echo.Context) error {
		return noContent(c, s.DeleteUser(ctx(c), c.Param("user")))
	})
	a.add(http.MethodPost, v1+"/users/:user/tokens", "Create an API token (its secret is shown once)", "json", 201, func(c echo.Context) error {
		var in struct {
			Name           string  `json:"name"`
			ExpiresInHours float64 `json:"expiresInHours"`
		}
		if err := decode(c, &in); err != nil {
			return err
		}
		ttl := time.Duration(in.ExpiresInHours * float64(time.Hour))
		return answer(c, 201)(s.CreateToken(ctx(c), c.Param("user"), in.Name, ttl))
	})
	a.add(http.MethodGet, v1+"/users/:user/tokens", "List a user's tokens", "", 200, func(c echo.Context) error {
		t, err := s.ListTokens(ctx(c), c.Param("user"))
		return answer(c, 200)(cloud.Page[cloud.Token]{Items: t}, err)
	})
	a.add(http.MethodDelete, v1+"/users/:user/tokens/:id", "Revoke a token", "", 204, func(c echo.Context) error {
		return noContent(c, s.DeleteToken(ctx(c), c.Param("user"), c.Param("id")))
	})

	// Subscriptions.
	a.add(http.MethodPost, v1+"/subscriptions", "Create a subscription", "json", 201, func(c echo.Context) error {
		var in struct {
			Name        string `json:"name"`
			Description string `json:"description"`
		}
		if err := decode(c, &in); err != nil {
			return err
		}
		return answer(c, 201)(s.CreateSubscription(ctx(c), cloud.Subscription{Name: in.Name, Description: in.Description}))
	})
	a.add(http.MethodGet, v1+"/subscriptions", "List the subscriptions the caller has a role in", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListSubscriptions(ctx(c), o))
	})
	a.add(http.MethodGet, subP, "Show a subscription", "", 200, func(c echo.Context) error {
		return answer(c, 200)(s.GetSubscription(ctx(c), c.Param("sub")))
	})
	a.add(http.MethodPatch, subP, "Change a subscription", "json", 200, func(c echo.Context) error {
		var p cloud.Patch
		if err := decode(c, &p); err != nil {
			return err
		}
		return answer(c, 200)(s.UpdateSubscription(ctx(c), c.Param("sub"), p))
	})
	a.add(http.MethodDelete, subP, "Delete a subscription (non-empty: force=true)", "", 204, func(c echo.Context) error {
		force, err := boolQuery(c, "force")
		if err != nil {
			return err
		}
		return noContent(c, s.DeleteSubscription(ctx(c), c.Param("sub"), force))
	})

	// Accounts.
	a.add(http.MethodPost, subP+"/accounts", "Create an experimentation or model management account", "json", 201, func(c echo.Context) error {
		var in struct {
			Name        string            `json:"name"`
			Kind        cloud.AccountKind `json:"kind"`
			Description string            `json:"description"`
		}
		if err := decode(c, &in); err != nil {
			return err
		}
		return answer(c, 201)(s.CreateAccount(ctx(c), c.Param("sub"), cloud.Account{Name: in.Name, Kind: in.Kind, Description: in.Description}))
	})
	a.add(http.MethodGet, subP+"/accounts", "List a subscription's accounts", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListAccounts(ctx(c), c.Param("sub"), o))
	})
	a.add(http.MethodGet, acP, "Show an account", "", 200, func(c echo.Context) error {
		return answer(c, 200)(s.GetAccount(ctx(c), c.Param("sub"), c.Param("acct")))
	})
	a.add(http.MethodPatch, acP, "Change an account", "json", 200, func(c echo.Context) error {
		var p cloud.Patch
		if err := decode(c, &p); err != nil {
			return err
		}
		return answer(c, 200)(s.UpdateAccount(ctx(c), c.Param("sub"), c.Param("acct"), p))
	})
	a.add(http.MethodDelete, acP, "Delete an account (non-empty: force=true)", "", 204, func(c echo.Context) error {
		force, err := boolQuery(c, "force")
		if err != nil {
			return err
		}
		return noContent(c, s.DeleteAccount(ctx(c), c.Param("sub"), c.Param("acct"), force))
	})

	// Workspaces.
	a.add(http.MethodPost, acP+"/workspaces", "Create a workspace in an experimentation account", "json", 201, func(c echo.Context) error {
		var in struct {
			Name        string `json:"name"`
			Description string `json:"description"`
		}
		if err := decode(c, &in); err != nil {
			return err
		}
		return answer(c, 201)(s.CreateWorkspace(ctx(c), c.Param("sub"), c.Param("acct"), cloud.Workspace{Name: in.Name, Description: in.Description}))
	})
	a.add(http.MethodGet, acP+"/workspaces", "List an account's workspaces", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListWorkspaces(ctx(c), c.Param("sub"), c.Param("acct"), o))
	})
	a.add(http.MethodGet, wsP, "Show a workspace", "", 200, func(c echo.Context) error {
		return answer(c, 200)(s.GetWorkspace(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("ws")))
	})
	a.add(http.MethodPatch, wsP, "Change a workspace", "json", 200, func(c echo.Context) error {
		var p cloud.Patch
		if err := decode(c, &p); err != nil {
			return err
		}
		return answer(c, 200)(s.UpdateWorkspace(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("ws"), p))
	})
	a.add(http.MethodDelete, wsP, "Delete a workspace (non-empty: force=true)", "", 204, func(c echo.Context) error {
		force, err := boolQuery(c, "force")
		if err != nil {
			return err
		}
		return noContent(c, s.DeleteWorkspace(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("ws"), force))
	})

	// Projects.
	a.add(http.MethodPost, wsP+"/projects", "Create a project", "json", 201, func(c echo.Context) error {
		var in struct {
			Name        string `json:"name"`
			Folder      string `json:"folder"`
			GitRemote   string `json:"gitRemote"`
			Description string `json:"description"`
		}
		if err := decode(c, &in); err != nil {
			return err
		}
		return answer(c, 201)(s.CreateProject(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("ws"),
			cloud.Project{Name: in.Name, Folder: in.Folder, GitRemote: in.GitRemote, Description: in.Description}))
	})
	a.add(http.MethodGet, wsP+"/projects", "List a workspace's projects", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListProjects(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("ws"), o))
	})
	a.add(http.MethodGet, wsP+"/projects/:proj", "Show a project", "", 200, func(c echo.Context) error {
		return answer(c, 200)(s.GetProject(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("ws"), c.Param("proj")))
	})
	a.add(http.MethodPatch, wsP+"/projects/:proj", "Change a project", "json", 200, func(c echo.Context) error {
		var p cloud.Patch
		if err := decode(c, &p); err != nil {
			return err
		}
		return answer(c, 200)(s.UpdateProject(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("ws"), c.Param("proj"), p))
	})
	a.add(http.MethodDelete, wsP+"/projects/:proj", "Delete a project", "", 204, func(c echo.Context) error {
		return noContent(c, s.DeleteProject(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("ws"), c.Param("proj")))
	})

	// Role assignments on subscriptions, accounts and workspaces.
	for _, scope := range []struct{ path, what string }{{subP, "subscription"}, {acP, "account"}, {wsP, "workspace"}} {
		scopeOf := func(c echo.Context) string {
			return strings.TrimPrefix(c.Request().URL.Path[:strings.Index(c.Request().URL.Path, "/roleAssignments")], v1)
		}
		a.add(http.MethodGet, scope.path+"/roleAssignments", "List role assignments on a "+scope.what, "", 200, func(c echo.Context) error {
			g, err := s.ListRoleAssignments(ctx(c), scopeOf(c))
			return answer(c, 200)(cloud.Page[cloud.RoleAssignment]{Items: g}, err)
		})
		a.add(http.MethodPut, scope.path+"/roleAssignments/:user", "Grant a user a role on a "+scope.what, "json", 200, func(c echo.Context) error {
			var in struct {
				Role cloud.Role `json:"role"`
			}
			if err := decode(c, &in); err != nil {
				return err
			}
			return answer(c, 200)(s.AssignRole(ctx(c), scopeOf(c), c.Param("user"), in.Role))
		})
		a.add(http.MethodDelete, scope.path+"/roleAssignments/:user", "Revoke a user's role on a "+scope.what, "", 204, func(c echo.Context) error {
			return noContent(c, s.RemoveRole(ctx(c), scopeOf(c), c.Param("user")))
		})
	}

	// Models.
	a.add(http.MethodPost, acP+"/models/:name/versions", "Register a new model version (raw file body)", "bytes", 201, func(c echo.Context) error {
		q := c.QueryParams()
		tags := map[string]string{}
		for _, t := range q["tag"] {
			k, v, ok := strings.Cut(t, "=")
			if !ok {
				return errclass.Invalid("tag", "tag %q is not key=value", t)
			}
			tags[k] = v
		}
		if len(tags) == 0 {
			tags = nil
		}
		for k := range q {
			switch k {
			case "format", "description", "tag", "runId":
			default:
				return errclass.Invalid(k, "unknown query parameter %q", k)
			}
		}
		return answer(c, 201)(s.RegisterModel(ctx(c), cloud.RegisterModel{
			Subscription: c.Param("sub"), Account: c.Param("acct"), Name: c.Param("name"),
			Format: q.Get("format"), Description: q.Get("description"), Tags: tags, RunID: q.Get("runId"),
			Body: c.Request().Body,
		}))
	})
	a.add(http.MethodGet, acP+"/models", "List model versions", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListModels(ctx(c), c.Param("sub"), c.Param("acct"), c.QueryParam("name"), o))
	})
	a.add(http.MethodGet, acP+"/models/:name/versions", "List a model's versions", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListModels(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name"), o))
	})
	a.add(http.MethodGet, acP+"/models/:name/versions/:version", "Show a model version", "", 200, func(c echo.Context) error {
		v, err := version(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.GetModel(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name"), v))
	})
	a.add(http.MethodPatch, acP+"/models/:name/versions/:version", "Change a model version's description and tags", "json", 200, func(c echo.Context) error {
		v, err := version(c)
		if err != nil {
			return err
		}
		var p cloud.Patch
		if err := decode(c, &p); err != nil {
			return err
		}
		return answer(c, 200)(s.UpdateModel(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name"), v, p))
	})
	a.add(http.MethodDelete, acP+"/models/:name/versions/:version", "Delete a model version", "", 204, func(c echo.Context) error {
		v, err := version(c)
		if err != nil {
			return err
		}
		return noContent(c, s.DeleteModel(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name"), v))
	})
	a.add(http.MethodGet, acP+"/models/:name/versions/:version/content", "Download a model version's file", "", 200, func(c echo.Context) error {
		v, err := version(c)
		if err != nil {
			return err
		}
		m, f, err := s.OpenModel(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name"), v)
		if err != nil {
			return err
		}
		defer f.Close()
		h := c.Response().Header()
		h.Set("ETag", `"`+m.Digest+`"`)
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", `attachment; filename="`+m.Name+"-"+strconv.Itoa(m.Version)+`"`)
		http.ServeContent(c.Response(), c.Request(), "", m.CreatedAt, f)
		return nil
	})

	// Manifests.
	a.add(http.MethodPost, acP+"/manifests", "Create the next version of a manifest", "json", 201, func(c echo.Context) error {
		b, err := readBody(c)
		if err != nil {
			return err
		}
		return answer(c, 201)(s.CreateManifest(ctx(c), c.Param("sub"), c.Param("acct"), b))
	})
	a.add(http.MethodGet, acP+"/manifests", "List manifest versions", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListManifests(ctx(c), c.Param("sub"), c.Param("acct"), c.QueryParam("name"), o))
	})
	a.add(http.MethodGet, acP+"/manifests/:name/versions", "List a manifest's versions", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListManifests(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name"), o))
	})
	a.add(http.MethodGet, acP+"/manifests/:name/versions/:version", "Show a manifest version", "", 200, func(c echo.Context) error {
		v, err := version(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.GetManifest(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name"), v))
	})
	a.add(http.MethodDelete, acP+"/manifests/:name/versions/:version", "Delete a manifest version", "", 204, func(c echo.Context) error {
		v, err := version(c)
		if err != nil {
			return err
		}
		return noContent(c, s.DeleteManifest(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name"), v))
	})

	// Images.
	a.add(http.MethodPost, acP+"/images", "Build an image from a manifest version (long operation: 202 + operation)", "json", 202, func(c echo.Context) error {
		var in cloud.CreateImage
		if err := decode(c, &in); err != nil {
			return err
		}
		op, err := s.CreateImage(ctx(c), c.Param("sub"), c.Param("acct"), in)
		if err != nil {
			return err
		}
		c.Response().Header().Set("Location", v1+op.Path)
		return c.JSON(http.StatusAccepted, op)
	})
	a.add(http.MethodGet, acP+"/images", "List image versions", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListImages(ctx(c), c.Param("sub"), c.Param("acct"), c.QueryParam("name"), o))
	})
	a.add(http.MethodGet, acP+"/images/:name/versions", "List an image's versions", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListImages(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name"), o))
	})
	a.add(http.MethodGet, acP+"/images/:name/versions/:version", "Show an image version", "", 200, func(c echo.Context) error {
		v, err := version(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.GetImage(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name"), v))
	})
	a.add(http.MethodDelete, acP+"/images/:name/versions/:version", "Delete an image version (refused while a service uses it)", "", 204, func(c echo.Context) error {
		v, err := version(c)
		if err != nil {
			return err
		}
		return noContent(c, s.DeleteImage(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name"), v))
	})

	// Environments, services and rollouts.
	a.add(http.MethodPost, acP+"/environments", "Create an environment: one device, or a fleet by label selector", "json", 201, func(c echo.Context) error {
		var in struct {
			Name        string            `json:"name"`
			Device      string            `json:"device"`
			Selector    map[string]string `json:"selector"`
			Description string            `json:"description"`
		}
		if err := decode(c, &in); err != nil {
			return err
		}
		return answer(c, 201)(s.CreateEnvironment(ctx(c), c.Param("sub"), c.Param("acct"),
			cloud.Environment{Name: in.Name, Device: in.Device, Selector: in.Selector, Description: in.Description}))
	})
	a.add(http.MethodGet, acP+"/environments", "List environments", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListEnvironments(ctx(c), c.Param("sub"), c.Param("acct"), o))
	})
	a.add(http.MethodGet, acP+"/environments/:name", "Show an environment", "", 200, func(c echo.Context) error {
		return answer(c, 200)(s.GetEnvironment(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name")))
	})
	a.add(http.MethodDelete, acP+"/environments/:name", "Delete an environment no service uses", "", 204, func(c echo.Context) error {
		return noContent(c, s.DeleteEnvironment(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name")))
	})
	a.add(http.MethodPost, acP+"/services", "Create a service and start its first rollout", "json", 201, func(c echo.Context) error {
		var in cloud.CreateServiceRequest
		if err := decode(c, &in); err != nil {
			return err
		}
		svc, ro, err := s.CreateService(ctx(c), c.Param("sub"), c.Param("acct"), in)
		if err != nil {
			return err
		}
		return c.JSON(201, map[string]any{"service": svc, "rollout": ro})
	})
	a.add(http.MethodGet, acP+"/services", "List services", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListServices(ctx(c), c.Param("sub"), c.Param("acct"), o))
	})
	a.add(http.MethodGet, acP+"/services/:svc", "Show a service", "", 200, func(c echo.Context) error {
		return answer(c, 200)(s.GetService(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("svc")))
	})
	a.add(http.MethodDelete, acP+"/services/:svc", "Delete a service (its devices stop it)", "", 204, func(c echo.Context) error {
		return noContent(c, s.DeleteService(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("svc")))
	})
	a.add(http.MethodPost, acP+"/services/:svc/rollouts", "Start a rollout of a service to an image version", "json", 201, func(c echo.Context) error {
		var in cloud.RolloutRequest
		if err := decode(c, &in); err != nil {
			return err
		}
		return answer(c, 201)(s.StartRollout(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("svc"), in))
	})
	a.add(http.MethodPost, acP+"/services/:svc/rollback", "Roll a service back to its previous image (a new rollout)", "", 201, func(c echo.Context) error {
		return answer(c, 201)(s.RollbackService(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("svc")))
	})
	a.add(http.MethodGet, acP+"/services/:svc/rollouts", "List a service's rollouts", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListRollouts(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("svc"), o))
	})
	a.add(http.MethodGet, acP+"/services/:svc/rollouts/:id", "Show a rollout: batch, per-state counts, every device's outcome", "", 200, func(c echo.Context) error {
		return answer(c, 200)(s.GetRollout(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("svc"), c.Param("id")))
	})
	a.add(http.MethodPost, acP+"/services/:svc/rollouts/:id/:action", "Pause, resume or abort (reverting) a rollout", "", 200, func(c echo.Context) error {
		return answer(c, 200)(s.ActOnRollout(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("svc"), c.Param("id"), c.Param("action")))
	})

	// External registries.
	a.add(http.MethodPost, acP+"/registries", "Configure an external registry (its passwords are never returned)", "json", 201, func(c echo.Context) error {
		var in struct {
			Name         string `json:"name"`
			Host         string `json:"host"`
			Prefix       string `json:"prefix"`
			Username     string `json:"username"`
			Password     string `json:"password"`
			PullUsername string `json:"pullUsername"`
			PullPassword string `json:"pullPassword"`
			Insecure     bool   `json:"insecure"`
		}
		if err := decode(c, &in); err != nil {
			return err
		}
		return answer(c, 201)(s.CreateRegistry(ctx(c), c.Param("sub"), c.Param("acct"), cloud.ExternalRegistry{
			Name: in.Name, Host: in.Host, Prefix: in.Prefix, Username: in.Username, Password: in.Password,
			PullUsername: in.PullUsername, PullPassword: in.PullPassword, Insecure: in.Insecure}))
	})
	a.add(http.MethodGet, acP+"/registries", "List external registries", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListRegistries(ctx(c), c.Param("sub"), c.Param("acct"), o))
	})
	a.add(http.MethodGet, acP+"/registries/:name", "Show an external registry", "", 200, func(c echo.Context) error {
		return answer(c, 200)(s.GetRegistry(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name")))
	})
	a.add(http.MethodDelete, acP+"/registries/:name", "Forget an external registry", "", 204, func(c echo.Context) error {
		return noContent(c, s.DeleteRegistry(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("name")))
	})

	// Devices.
	a.add(http.MethodPost, acP+"/enrollmentTokens", "Create a one-time device enrollment token", "json", 201, func(c echo.Context) error {
		var in struct {
			Labels         map[string]string `json:"labels"`
			ExpiresInHours float64           `json:"expiresInHours"`
		}
		if err := decode(c, &in); err != nil {
			return err
		}
		ttl := time.Duration(in.ExpiresInHours * float64(time.Hour))
		return answer(c, 201)(s.CreateEnrollmentToken(ctx(c), c.Param("sub"), c.Param("acct"), in.Labels, ttl))
	})
	a.add(http.MethodPost, v1+"/enroll", "Enroll a device with a one-time token (or rotate its credential)", "json", 201, func(c echo.Context) error {
		var in cloud.EnrollRequest
		if err := decode(c, &in); err != nil {
			return err
		}
		return answer(c, 201)(s.Enroll(ctx(c), in))
	})
	a.add(http.MethodGet, acP+"/devices", "List an account's devices (label=k=v filters)", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		sel, err := labelSelector(c.QueryParams()["label"])
		if err != nil {
			return err
		}
		page, err := s.ListDevices(ctx(c), c.Param("sub"), c.Param("acct"), sel, o)
		for i := range page.Items {
			redactDevice(&page.Items[i])
		}
		return answer(c, 200)(page, err)
	})
	a.add(http.MethodGet, acP+"/devices/:id", "Show a device", "", 200, func(c echo.Context) error {
		d, err := s.GetDevice(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("id"))
		return answer(c, 200)(redactDevice(d), err)
	})
	a.add(http.MethodPatch, acP+"/devices/:id", "Change a device's labels", "json", 200, func(c echo.Context) error {
		var in struct {
			Labels map[string]string `json:"labels"`
		}
		if err := decode(c, &in); err != nil {
			return err
		}
		d, err := s.UpdateDeviceLabels(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("id"), in.Labels)
		return answer(c, 200)(redactDevice(d), err)
	})
	a.add(http.MethodDelete, acP+"/devices/:id", "Delete a device (its credential stops working)", "", 204, func(c echo.Context) error {
		return noContent(c, s.DeleteDevice(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("id")))
	})
	a.add(http.MethodPut, acP+"/devices/:id/desired", "Set the services a device must run (next desired version)", "json", 200, func(c echo.Context) error {
		var in struct {
			Services []twin.ServiceSpec `json:"services"`
		}
		if err := decode(c, &in); err != nil {
			return err
		}
		d, err := s.SetDesiredServices(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("id"), in.Services)
		return answer(c, 200)(redactDevice(d), err)
	})

	// Operations.
	a.add(http.MethodGet, acP+"/operations", "List an account's operations", "", 200, func(c echo.Context) error {
		o, err := listOptions(c)
		if err != nil {
			return err
		}
		return answer(c, 200)(s.ListOperations(ctx(c), c.Param("sub"), c.Param("acct"), o))
	})
	a.add(http.MethodGet, acP+"/operations/:id", "Show an operation", "", 200, func(c echo.Context) error {
		return answer(c, 200)(s.GetOperation(ctx(c), c.Param("sub"), c.Param("acct"), c.Param("id")))
	})
}

func ctx(c echo.Context) context.Context { return c.Request().Context() }

// answer writes v with status, or the error.
func answer(c echo.Context, status int) func(v any, err error) error {
	return func(v any, err error) error {
		if err != nil {
			return err
		}
		return c.JSON(status, v)
	}
}

func noContent(c echo.Context, err error) error {
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// redactDevice drops secrets (registry pull credentials) from a device
// before it is shown.
func redactDevice(d *cloud.Device) *cloud.Device {
	if d == nil || d.Desired == nil {
		return d
	}
	desired := *d.Desired
	desired.Services = append([]twin.ServiceSpec(nil), desired.Services...)
	for i := range desired.Services {
		desired.Services[i].Pull = nil
	}
	d.Desired = &desired
	return d
}

func labelSelector(in []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	sel := map[string]string{}
	for _, l := range in {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, errclass.Invalid("label", "label selector %q is not key=value", l)
		}
		sel[k] = v
	}
	return sel, nil
}
