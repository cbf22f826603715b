/* kv_groups.c — assigns layers to KV-cache groups by attention kind (full, or a sliding
 * window of W tokens). The scheduler keeps one block table per group; each layer finds its
 * slot mapping as batch->slot_mapping[layer_group[l]]. */
#include <errno.h>

#include "engine/model/model.h"

int model_kv_groups(const struct model_config *cfg, int *group_window, int *layer_group,
                    int max_groups)
{
    int n = 0;
    bool has_full = false;

    for (int l = 0; l < cfg->num_layers; l++)
        has_full |= cfg->layer_window[l] == 0;
    if (has_full)
        group_window[n++] = 0;
    for (int l = 0; l < cfg->num_layers; l++) {
        int w = cfg->layer_window[l], g;

        for (g = 0; g < n && group_window[g] != w; g++)
            ;
        if (g == n) {
            if (n == max_groups)
                return -EINVAL;
            group_window[n++] = w;
        }
        layer_group[l] = g;
    }
    return n;
}
