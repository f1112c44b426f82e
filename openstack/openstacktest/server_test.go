package openstacktest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func start(t *testing.T, o Options) (*Server, string) {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	req := `{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"name": "Default"}, "password": "pw"}}}}}`
	resp, err := http.Post(s.AuthURL()+"/auth/tokens", "application/json", strings.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	tok := resp.Header.Get("X-Subject-Token")
	if resp.StatusCode != http.StatusCreated || tok == "" {
		t.Fatalf("auth: %s, token %q", resp.Status, tok)
	}
	var body struct {
		Token struct {
			Catalog []struct {
				Type      string `json:"type"`
				Endpoints []struct {
					URL string `json:"url"`
				} `json:"endpoints"`
			} `json:"catalog"`
		} `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	for _, e := range body.Token.Catalog {
		for _, ep := range e.Endpoints {
			if !strings.HasPrefix(ep.URL, s.URL+"/"+e.Type+"/") {
				t.Errorf("%s endpoint %s not rewritten", e.Type, ep.URL)
			}
		}
	}
	return s, tok
}

func get(t *testing.T, url, tok string) (int, map[string]json.RawMessage) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-Auth-Token", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]json.RawMessage
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

// Servers page by one with nova's next links; the full last page links to an
// empty one; tokens are checked.
func TestPaging(t *testing.T) {
	s, tok := start(t, Options{})
	ids := append(s.IDs(Servers), s.AddServers(1)...)
	url := s.URL + "/compute/v2.1/" + ProjectID + "/servers/detail?all_tenants=1"
	var got []string
	for page := 0; url != ""; page++ {
		if page > 5 {
			t.Fatal("pagination does not end")
		}
		code, body := get(t, url, tok)
		if code != http.StatusOK {
			t.Fatalf("page %d: %d", page, code)
		}
		var servers []struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(body["servers"], &servers)
		for _, sv := range servers {
			got = append(got, sv.ID)
		}
		var links []struct{ Href, Rel string }
		_ = json.Unmarshal(body["servers_links"], &links)
		url = ""
		for _, l := range links {
			if l.Rel == "next" {
				url = l.Href
				if !strings.Contains(url, "all_tenants=1") {
					t.Errorf("next link lost the query: %s", url)
				}
			}
		}
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("listed %v, want %v", got, ids)
	}
	if code, _ := get(t, s.URL+"/compute/v2.1/"+ProjectID+"/servers/detail", "bogus"); code != http.StatusUnauthorized {
		t.Errorf("bad token: %d", code)
	}
}

// The control endpoint changes the data and injects failures.
func TestControl(t *testing.T) {
	s, tok := start(t, Options{})
	ctl := func(body string) int {
		resp, err := http.Post(s.URL+"/_control", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	id := s.IDs(Servers)[0]
	if ctl(`{"op": "set_status", "id": "`+id+`", "status": "ERROR"}`) != 200 {
		t.Fatal("set_status failed")
	}
	_, body := get(t, s.URL+"/compute/v2.1/"+ProjectID+"/servers/detail", tok)
	if !strings.Contains(string(body["servers"]), `"status":"ERROR"`) {
		t.Errorf("status not set: %s", body["servers"])
	}
	if ctl(`{"op": "fail", "target": "network", "mode": "500", "times": 1}`) != 200 {
		t.Fatal("fail failed")
	}
	if code, _ := get(t, s.URL+"/network/v2.0/networks", tok); code != 500 {
		t.Errorf("injected failure: %d", code)
	}
	if code, _ := get(t, s.URL+"/network/v2.0/networks", tok); code != 200 {
		t.Errorf("after one failure: %d", code)
	}
	if ctl(`{"op": "add_servers", "n": 3}`) != 200 || len(s.IDs(Servers)) != 4 {
		t.Errorf("add_servers: %d servers", len(s.IDs(Servers)))
	}
	if ctl(`{"op": "remove", "collection": "servers", "id": "`+id+`"}`) != 200 || len(s.IDs(Servers)) != 3 {
		t.Error("remove failed")
	}
	if ctl(`{"op": "expire_tokens"}`) != 200 {
		t.Fatal("expire_tokens failed")
	}
	if code, _ := get(t, s.URL+"/network/v2.0/networks", tok); code != 401 {
		t.Errorf("expired token: %d", code)
	}
	if ctl(`{"op": "nonsense"}`) != 400 {
		t.Error("unknown op accepted")
	}
}

// A stack's resource list: the Heat sample for the fixture stack, Heat's
// 404 for a name that is not the stack's, resources added through the
// control endpoint, failures for one stack.
func TestStackResources(t *testing.T) {
	s, tok := start(t, Options{})
	id := s.IDs(Stacks)[0]
	base := s.URL + "/orchestration/v1/" + ProjectID + "/stacks/"
	code, body := get(t, base+"simple_stack/"+id+"/resources?nested_depth=10", tok)
	if code != http.StatusOK || !strings.Contains(string(body["resources"]), `"OS::Heat::RandomString"`) {
		t.Fatalf("resources: %d %s", code, body["resources"])
	}
	if code, body := get(t, base+"other_name/"+id+"/resources", tok); code != http.StatusNotFound || !strings.Contains(string(body["error"]), "The Stack (other_name) could not be found.") {
		t.Errorf("wrong name: %d %s", code, body["error"])
	}
	resp, err := http.Post(s.URL+"/_control", "application/json", strings.NewReader(
		`{"op": "add_resource", "id": "`+id+`", "resource_type": "OS::Nova::Server", "physical_resource_id": "srv-1", "name": "server"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, body = get(t, base+"simple_stack/"+id+"/resources", tok)
	var res []map[string]any
	_ = json.Unmarshal(body["resources"], &res)
	if len(res) != 2 || res[1]["physical_resource_id"] != "srv-1" || res[1]["resource_name"] != "server" || res[1]["resource_status"] != "CREATE_COMPLETE" {
		t.Errorf("after add_resource: %v", res)
	}
	other := s.AddStacks(1)[0]
	s.Fail(Resources+"/"+other, Failure{Mode: Fail500})
	if code, _ := get(t, base+"stack-1/"+other+"/resources", tok); code != http.StatusInternalServerError {
		t.Errorf("failed stack: %d", code)
	}
	if code, _ := get(t, base+"simple_stack/"+id+"/resources", tok); code != http.StatusOK {
		t.Errorf("other stack: %d", code)
	}
	if s.Requests(Resources) != 4 { // the injected failure is not counted
		t.Errorf("requests = %d", s.Requests(Resources))
	}
}
