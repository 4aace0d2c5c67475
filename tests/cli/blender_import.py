"""Imports a GLB into Blender and prints what Blender made of it, as one JSON line.

Run by tests/cli/engines.rs as `blender -b --factory-startup --python blender_import.py -- FILE.glb`.
"""

import json
import sys

import numpy

# Debian's Blender 3.4 glTF importer still says numpy.bool, which numpy 1.24 removed.
if not hasattr(numpy, "bool"):
    numpy.bool = bool

import bpy  # noqa: E402

path = sys.argv[sys.argv.index("--") + 1]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=path)
objects = []
for obj in bpy.data.objects:
    entry = {"name": obj.name, "parent": obj.parent.name if obj.parent else None}
    if obj.type == "MESH":
        world = [obj.matrix_world @ v.co for v in obj.data.vertices]
        entry["faces"] = len(obj.data.polygons)
        entry["min"] = [min(p[k] for p in world) for k in range(3)]
        entry["max"] = [max(p[k] for p in world) for k in range(3)]
        materials = []
        for slot in obj.material_slots:
            material = slot.material
            bsdf = material.node_tree.nodes.get("Principled BSDF")
            base = bsdf.inputs["Base Color"]
            # A tangent-space normal map: an image into a Normal Map node into the BSDF.
            normal_maps = [
                link.from_node
                for link in bsdf.inputs["Normal"].links
                if link.from_node.type == "NORMAL_MAP"
            ]
            materials.append(
                {
                    "name": material.name,
                    "roughness": bsdf.inputs["Roughness"].default_value,
                    "metallic": bsdf.inputs["Metallic"].default_value,
                    "base_color_texture": any(
                        link.from_node.type == "TEX_IMAGE" for link in base.links
                    ),
                    "normal_texture": any(
                        node.space == "TANGENT"
                        and any(
                            link.from_node.type == "TEX_IMAGE"
                            for link in node.inputs["Color"].links
                        )
                        for node in normal_maps
                    ),
                }
            )
        entry["materials"] = materials
    objects.append(entry)
print("BLENDER_IMPORT " + json.dumps({"objects": objects}))
