package httpapi

import (
	"bytes"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/fleet"
)

// The device and fleet handlers: decode, call the domain, encode.

func checkIn(s CheckIns) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.CheckIn
		if !decodeBody(c, &in) {
			return
		}
		a, err := s.CheckIn(c.Request.Context(), device(c), in)
		respond(c, http.StatusOK, api.CheckInResponse{Assignment: a}, err)
	}
}

func openSession(s DeviceAuth) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.SessionRequest
		if !decodeBody(c, &in) {
			return
		}
		ss, err := s.OpenSession(c.Request.Context(), device(c), in)
		respond(c, http.StatusOK, ss, err)
	}
}

func ingestEvents(s Events) gin.HandlerFunc {
	return func(c *gin.Context) {
		var b api.EventBatch
		if !decodeBody(c, &b) {
			return
		}
		res, err := s.Ingest(c.Request.Context(), device(c).Device, b)
		respond(c, http.StatusOK, res, err)
	}
}

func listDeviceEvents(s Events) gin.HandlerFunc {
	return func(c *gin.Context) {
		limit, _ := strconv.Atoi(c.Query("limit"))
		evs, err := s.List(c.Request.Context(), c.Param("id"), limit)
		respond(c, http.StatusOK, api.DeviceEvents{Events: evs}, err)
	}
}

func putSite(s Registry) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.Site
		if !decodeBody(c, &in) {
			return
		}
		in.Name = c.Param("name")
		respond(c, http.StatusOK, api.SiteSaved{Site: in.Name}, s.PutSite(c.Request.Context(), in))
	}
}

func registerDevices(s Registry) gin.HandlerFunc {
	return func(c *gin.Context) {
		var ins []api.Device
		if !decodeBody(c, &ins) {
			return
		}
		respond(c, http.StatusCreated, api.DevicesRegistered{Registered: len(ins)}, s.RegisterDevices(c.Request.Context(), ins))
	}
}

func importDevices(s Registry) gin.HandlerFunc {
	return func(c *gin.Context) {
		body, err := readBody(c, MaxImportBytes)
		if err != nil {
			WriteError(c, err)
			return
		}
		ins, lines, err := fleet.ParseCSV(bytes.NewReader(body))
		var out api.DevicesRegistered
		if err == nil {
			out, err = s.ImportDevices(c.Request.Context(), ins, lines)
		}
		respond(c, http.StatusCreated, out, err)
	}
}

func decommission(s Registry) gin.HandlerFunc {
	return func(c *gin.Context) {
		respond(c, http.StatusOK, api.Decommissioned{Decommissioned: c.Param("id")}, s.Decommission(c.Request.Context(), c.Param("id")))
	}
}

func createRollout(s Rollouts) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.RolloutPlan
		if !decodeBody(c, &in) {
			return
		}
		out, err := s.Create(c.Request.Context(), in)
		respond(c, http.StatusCreated, out, err)
	}
}

func rolloutStatus(s Rollouts) gin.HandlerFunc {
	return func(c *gin.Context) {
		st, err := s.Status(c.Request.Context(), c.Param("id"))
		respond(c, http.StatusOK, st, err)
	}
}

func controlRollout(s Rollouts, action string) gin.HandlerFunc {
	return func(c *gin.Context) {
		out, err := s.Control(c.Request.Context(), c.Param("id"), action)
		respond(c, http.StatusOK, out, err)
	}
}

func approve(s Rollouts) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.Approval
		if !decodeBody(c, &in) {
			return
		}
		respond(c, http.StatusOK, api.Done{OK: true}, s.Approve(c.Request.Context(), c.Param("id"), in))
	}
}

func deferWave(s Rollouts) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.Deferral
		if !decodeBody(c, &in) {
			return
		}
		respond(c, http.StatusOK, api.Done{OK: true}, s.Defer(c.Request.Context(), c.Param("id"), in))
	}
}

func haltRelease(s Rollouts) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in api.HaltRequest
		if !decodeBody(c, &in) {
			return
		}
		ids, err := s.HaltRelease(c.Request.Context(), c.Param("release"), in.Reason)
		respond(c, http.StatusOK, api.Halted{Halted: ids}, err)
	}
}

func listDevices(s Registry) gin.HandlerFunc {
	return func(c *gin.Context) {
		offset, _ := strconv.Atoi(c.Query("offset"))
		limit, _ := strconv.Atoi(c.Query("limit"))
		page, err := s.DevicePage(c.Request.Context(), fleet.DeviceQuery{Site: c.Query("site"), CareArea: c.Query("care_area"), Product: c.Query("product"),
			Version: c.Query("version"), Prefix: c.Query("q"), Offset: offset, Limit: limit})
		respond(c, http.StatusOK, page, err)
	}
}

func listRollouts(s Rollouts) gin.HandlerFunc {
	return func(c *gin.Context) {
		l, err := s.List(c.Request.Context())
		respond(c, http.StatusOK, l, err)
	}
}
