package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/server/internal/apperr"
)

// MaxEventBatchBytes bounds an event batch's body.
const MaxEventBatchBytes = 1 << 20

// Fleet is what the device routes need (fleet.Service).
type Fleet interface {
	Ingest(ctx context.Context, b api.EventBatch) (api.EventBatchResponse, error)
	Events(ctx context.Context, device string, limit int) ([]api.DeviceEvent, error)
}

// RegisterFleet adds the device event routes: agents POST their events;
// operators (bootstrap token) read a device's events.
func RegisterFleet(r *gin.Engine, f Fleet, bootstrapToken string) {
	r.POST(api.PathDeviceEvents, func(c *gin.Context) {
		var b api.EventBatch
		dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, MaxEventBatchBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			WriteError(c, apperr.Wrap(err, apperr.Invalid, "the body is not an event batch: %v", err))
			return
		}
		res, err := f.Ingest(c.Request.Context(), b)
		if err != nil {
			WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, res)
	})
	r.GET("/api/v1/devices/:id/events", requireToken(bootstrapToken), func(c *gin.Context) {
		limit, _ := strconv.Atoi(c.Query("limit"))
		evs, err := f.Events(c.Request.Context(), c.Param("id"), limit)
		if err != nil {
			WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"events": evs})
	})
}
