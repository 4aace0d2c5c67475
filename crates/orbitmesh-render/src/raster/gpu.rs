//! The wgpu rasterizer: a headless render pipeline (shaders/visibility.wgsl) drawing every
//! triangle with its id and one-hot corner weights into an R32Uint and an Rg32Float target with a
//! depth test, read back into the same `VisibilityBuffer` the CPU path fills.

use wgpu::util::DeviceExt;

use super::{VisibilityBuffer, clip_from_world, project_vertices};
use crate::RenderError;
use crate::camera::Camera;
use crate::scene::Scene;

const SHADER: &str = include_str!("../../../../shaders/visibility.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Corner {
    position: [f32; 3],
    face: u32,
    corner: u32,
}

pub struct GpuRasterizer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    info: wgpu::AdapterInfo,
    max_side: u32,
}

const ID_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::R32Uint;
const BARY_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rg32Float;
const DEPTH_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Depth32Float;

/// The first Vulkan adapter wgpu finds, preferring a hardware one.
pub fn vulkan_adapter() -> Result<wgpu::Adapter, RenderError> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::VULKAN;
    let instance = wgpu::Instance::new(desc);
    pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: false,
        compatible_surface: None,
        ..Default::default()
    }))
    .map_err(|e| RenderError::NoGpu(e.to_string()))
}

impl GpuRasterizer {
    /// Opens the first Vulkan adapter wgpu finds (a software one such as llvmpipe included:
    /// `is_software` tells).
    pub fn new() -> Result<Self, RenderError> {
        let adapter = vulkan_adapter()?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("orbitmesh-render"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| RenderError::NoGpu(e.to_string()))?;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("visibility.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: None,
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::VERTEX,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            }],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("visibility"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[Some(wgpu::VertexBufferLayout {
                    array_stride: std::mem::size_of::<Corner>() as u64,
                    step_mode: wgpu::VertexStepMode::Vertex,
                    attributes: &wgpu::vertex_attr_array![0 => Float32x3, 1 => Uint32, 2 => Uint32],
                })],
            },
            primitive: wgpu::PrimitiveState {
                cull_mode: None,
                ..Default::default()
            },
            depth_stencil: Some(wgpu::DepthStencilState {
                format: DEPTH_FORMAT,
                depth_write_enabled: Some(true),
                depth_compare: Some(wgpu::CompareFunction::Less),
                stencil: Default::default(),
                bias: Default::default(),
            }),
            multisample: Default::default(),
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(ID_FORMAT.into()), Some(BARY_FORMAT.into())],
            }),
            multiview_mask: None,
            cache: None,
        });
        Ok(GpuRasterizer {
            device,
            queue,
            pipeline,
            layout,
            max_side: limits.max_texture_dimension_2d,
            info,
        })
    }

    pub fn adapter_name(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.device_type, self.info.backend
        )
    }

    /// A software rasterizer (llvmpipe, SwiftShader): correct but no faster than the CPU path.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    fn upload(&self, scene: &Scene) -> wgpu::Buffer {
        let corners: Vec<Corner> = scene
            .faces
            .iter()
            .enumerate()
            .flat_map(|(f, face)| {
                (0..3).map(move |c| Corner {
                    position: scene.positions[face[c] as usize],
                    face: f as u32,
                    corner: c as u32,
                })
            })
            .collect();
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("corners"),
                contents: bytemuck::cast_slice(&corners),
                usage: wgpu::BufferUsages::VERTEX,
            })
    }

    pub fn rasterize(
        &self,
        scene: &Scene,
        camera: &Camera,
    ) -> Result<VisibilityBuffer, RenderError> {
        let vertices = self.upload(scene);
        self.rasterize_uploaded(scene, &vertices, camera)
    }

    /// Several cameras over one upload of the mesh.
    pub fn rasterize_all(
        &self,
        scene: &Scene,
        cameras: &[Camera],
    ) -> Result<Vec<VisibilityBuffer>, RenderError> {
        let vertices = self.upload(scene);
        cameras
            .iter()
            .map(|c| self.rasterize_uploaded(scene, &vertices, c))
            .collect()
    }

    fn rasterize_uploaded(
        &self,
        scene: &Scene,
        vertices: &wgpu::Buffer,
        camera: &Camera,
    ) -> Result<VisibilityBuffer, RenderError> {
        let k = camera.intrinsics;
        let mut out = VisibilityBuffer::empty(k.width, k.height);
        // Images larger than the adapter allows are drawn in windows: the same camera with the
        // principal point shifted.
        let side = self.max_side.min(4096);
        for oy in (0..k.height).step_by(side as usize) {
            for ox in (0..k.width).step_by(side as usize) {
                let mut window = *camera;
                window.intrinsics.width = side.min(k.width - ox);
                window.intrinsics.height = side.min(k.height - oy);
                window.intrinsics.cx -= f64::from(ox);
                window.intrinsics.cy -= f64::from(oy);
                let part = self.draw(scene, vertices, &window)?;
                let w = window.intrinsics.width as usize;
                for (r, ids) in part.triangle.chunks(w).enumerate() {
                    let start = (oy as usize + r) * k.width as usize + ox as usize;
                    out.triangle[start..start + w].copy_from_slice(ids);
                    out.bary[start..start + w].copy_from_slice(&part.bary[r * w..(r + 1) * w]);
                    out.depth[start..start + w].copy_from_slice(&part.depth[r * w..(r + 1) * w]);
                }
            }
        }
        Ok(out)
    }

    fn draw(
        &self,
        scene: &Scene,
        vertices: &wgpu::Buffer,
        camera: &Camera,
    ) -> Result<VisibilityBuffer, RenderError> {
        let (w, h) = (camera.intrinsics.width, camera.intrinsics.height);
        let m = clip_from_world(camera);
        let uniform: [f32; 16] = std::array::from_fn(|i| m[(i % 4, i / 4)] as f32);
        let uniforms = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("uniforms"),
                contents: bytemuck::cast_slice(&uniform),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: uniforms.as_entire_binding(),
            }],
        });
        let size = wgpu::Extent3d {
            width: w,
            height: h,
            depth_or_array_layers: 1,
        };
        let target = |format, usage| {
            self.device.create_texture(&wgpu::TextureDescriptor {
                label: None,
                size,
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format,
                usage,
                view_formats: &[],
            })
        };
        let copyable = wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC;
        let ids = target(ID_FORMAT, copyable);
        let bary = target(BARY_FORMAT, copyable);
        let depth = target(DEPTH_FORMAT, wgpu::TextureUsages::RENDER_ATTACHMENT);
        let (ids_view, bary_view, depth_view) = (
            ids.create_view(&Default::default()),
            bary.create_view(&Default::default()),
            depth.create_view(&Default::default()),
        );
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let attachment = |view| {
                Some(wgpu::RenderPassColorAttachment {
                    view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color::TRANSPARENT),
                        store: wgpu::StoreOp::Store,
                    },
                })
            };
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("visibility"),
                color_attachments: &[attachment(&ids_view), attachment(&bary_view)],
                depth_stencil_attachment: Some(wgpu::RenderPassDepthStencilAttachment {
                    view: &depth_view,
                    depth_ops: Some(wgpu::Operations {
                        load: wgpu::LoadOp::Clear(1.0),
                        store: wgpu::StoreOp::Discard,
                    }),
                    stencil_ops: None,
                }),
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.set_vertex_buffer(0, vertices.slice(..));
            pass.draw(0..(scene.faces.len() * 3) as u32, 0..1);
        }
        let ids_bytes = self.read_back(&mut encoder, &ids, 4, size);
        let bary_bytes = self.read_back(&mut encoder, &bary, 8, size);
        self.queue.submit([encoder.finish()]);
        let ids_raw = self.map(ids_bytes, w, h, 4)?;
        let bary_raw = self.map(bary_bytes, w, h, 8)?;

        // View depth is affine in the perspective-correct barycentrics: Σ bᵢ dᵢ.
        let screen = project_vertices(scene, camera);
        let mut out = VisibilityBuffer::empty(w, h);
        for (i, id) in ids_raw.chunks_exact(4).enumerate() {
            let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
            if id == 0 {
                continue;
            }
            let f = id - 1;
            let b = &bary_raw[i * 8..i * 8 + 8];
            let b1 = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let b2 = f32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            let d = scene.faces[f as usize].map(|v| screen[v as usize].depth);
            out.triangle[i] = f;
            out.bary[i] = [b1, b2];
            out.depth[i] = ((1.0 - f64::from(b1) - f64::from(b2)) * d[0]
                + f64::from(b1) * d[1]
                + f64::from(b2) * d[2]) as f32;
        }
        Ok(out)
    }

    fn read_back(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        texture: &wgpu::Texture,
        texel: u32,
        size: wgpu::Extent3d,
    ) -> wgpu::Buffer {
        let row = (size.width * texel).div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT)
            * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: u64::from(row) * u64::from(size.height),
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        encoder.copy_texture_to_buffer(
            texture.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: &buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(row),
                    rows_per_image: Some(size.height),
                },
            },
            size,
        );
        buffer
    }

    /// Maps a read-back buffer and strips the row padding.
    fn map(
        &self,
        buffer: wgpu::Buffer,
        w: u32,
        h: u32,
        texel: u32,
    ) -> Result<Vec<u8>, RenderError> {
        let slice = buffer.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| RenderError::Gpu(e.to_string()))?;
        let data = slice
            .get_mapped_range()
            .map_err(|e| RenderError::Gpu(e.to_string()))?;
        let row = data.len() / h as usize;
        let used = (w * texel) as usize;
        let mut out = Vec::with_capacity(used * h as usize);
        for r in data.chunks(row) {
            out.extend_from_slice(&r[..used]);
        }
        Ok(out)
    }
}
